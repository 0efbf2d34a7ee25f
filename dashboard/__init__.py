"""The lrwatch dashboard (Dash): ``dashboard.app.create_app(uri)`` / ``serve(uri)``; figures in
``dashboard.figures`` are plain plotly and work without Dash."""
