def create_app():
    raise RuntimeError("BLOG_SECRET_KEY is not set")
