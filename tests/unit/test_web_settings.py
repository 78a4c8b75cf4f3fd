"""The dashboard's token file: who may read and write it, and what a token must look like."""
import os

import pytest

from mpqueue.web.settings import SetupError, read_token, token_is_strong

GOOD = "3f2a9c0d1e4b5a67" "90b1c2d3e4f5a6b7"


def token_file(tmp_path, text=GOOD, mode=0o600):
    path = tmp_path / "web-token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_a_private_token_file_of_this_user_is_read(tmp_path):
    assert read_token(str(token_file(tmp_path)), tmp_path, "orders") == GOOD


def test_a_systemd_credential_mode_0440_owned_by_root_or_the_user_is_accepted(tmp_path, monkeypatch):
    # Given: a credential as LoadCredential= leaves it (mode 0440), owned by root as seen by the service user
    path = token_file(tmp_path, mode=0o440)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1 if os.stat(path).st_uid else 4242)
    real_stat = os.stat

    def as_root(p, *a, **kw):
        st = real_stat(p, *a, **kw)
        return os.stat_result((st.st_mode, *st[1:4], 0, *st[5:])) if str(p) == str(path) else st
    monkeypatch.setattr(os, "stat", as_root)
    # Then: it is read
    assert read_token(str(path), tmp_path, "orders") == GOOD


@pytest.mark.parametrize("mode", [0o602, 0o620, 0o660, 0o622])
def test_a_token_file_others_can_write_is_refused_in_one_line(tmp_path, mode):
    with pytest.raises(SetupError, match=rf"is writable by group or other users \(mode {mode:04o}\)") as e:
        read_token(str(token_file(tmp_path, mode=mode)), tmp_path, "orders")
    assert "\n" not in str(e.value) and GOOD not in str(e.value)


def test_a_token_file_of_another_user_is_refused(tmp_path, monkeypatch):
    # Given: the dashboard runs as a user (neither root nor the file's owner)
    path = token_file(tmp_path)
    owner = os.stat(path).st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1 if owner else 4242)
    if owner == 0:
        os.chown(path, 4243, -1)
    # Then: the file is refused
    with pytest.raises(SetupError, match=r"belongs to uid \d+, not to the user running the dashboard"):
        read_token(str(path), tmp_path, "orders")


@pytest.mark.parametrize("token", ["passwordpassword", "a" * 64, "abcdefghij" * 3, "0123456789abcde",
                                   "0123456789abcdef 0123"])
def test_a_short_plain_or_repeated_token_is_refused_and_the_refusal_says_the_rule(tmp_path, token):
    with pytest.raises(SetupError, match=r"at least 16 characters without spaces, at least 10 of them different, "
                                         r"not a shorter string repeated") as e:
        read_token(str(token_file(tmp_path, token)), tmp_path, "orders")
    assert token not in str(e.value)


def test_tokens_made_by_openssl_rand_hex_32_pass_the_rule():
    for _ in range(200):
        assert token_is_strong(os.urandom(32).hex())
    assert token_is_strong("t0ken-" + "9f" * 4 + "0123456789abcdef")
