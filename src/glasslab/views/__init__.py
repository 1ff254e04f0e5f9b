"""Renderers: result -> HTML, shared by notebooks, the app and reports."""
