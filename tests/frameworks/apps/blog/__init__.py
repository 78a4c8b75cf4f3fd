# A minimal Flask app built by a factory; the workers build it too
# (framework: {flask: "blog:create_app"} in the service's YAML).
from flask import Flask, jsonify

from mpqueue.contrib.flask import init_app


def create_app():
    app = Flask(__name__)
    app.config["GREETING"] = "Hello"
    app.config.from_prefixed_env("BLOG")    # BLOG_GREETING, BLOG_MPQUEUE_CONFIG, BLOG_RESULTS_URL
    init_app(app)                           # task.push() goes to app.config["MPQUEUE_CONFIG"]

    from .tasks import welcome

    @app.post("/welcome/<name>")
    def send_welcome(name):
        return jsonify(job=welcome.push(name)), 202

    return app
