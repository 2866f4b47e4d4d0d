"""The Inductive Bias Explorer web app (Gradio): `build_demo(Service())` builds it, `app.py` at the top level launches
it."""
from app.ui import CSS, THEME, build_demo

__all__ = ["CSS", "THEME", "build_demo"]
