def pytest_configure(config):
    # Registered here because pyproject.toml's marker list belongs to another change.
    config.addinivalue_line("markers", "deb: builds, installs and purges the Debian package for real "
                                       "(root; set MPQUEUE_DEB_TEST=1)")
