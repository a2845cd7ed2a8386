"""The widget panel (``nbtunnel.panel()``, ``%tunnel panel``).

``view`` turns snapshots into rows and words (pure, tested without a
browser); ``widget`` lays them out in ipywidgets and acts on clicks, with
``row`` (one forward's widgets) and ``style`` (the CSS); ``ticker`` is the
one thread that refreshes every live panel.
"""
