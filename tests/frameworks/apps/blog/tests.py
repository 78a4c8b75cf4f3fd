# Run with MPQUEUE_BROKER=sync:// in the environment (it wins over the app's
# config): `MPQUEUE_BROKER=sync:// pytest`. Each job runs inline, inside the
# app's context as in a worker, before push() returns.
from blog import create_app
from blog.tasks import results, welcome


def test_the_view_sends_the_welcome():
    app = create_app()
    response = app.test_client().post("/welcome/ada")
    assert response.status_code == 202
    job = app.extensions["mpqueue"].client.status(response.get_json()["job"])
    assert job == "done"
    with app.app_context():
        assert results().lrange("blog:sent", 0, -1) == ["Hello, ada"]


def test_a_push_outside_any_request_runs_in_the_apps_context():
    app = create_app()
    welcome.push("grace")       # as from a CLI command or a script
    with app.app_context():
        assert results().lrange("blog:sent", 0, -1)[-1] == "Hello, grace"
