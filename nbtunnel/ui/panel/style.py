"""How the panel looks: its CSS, and an error's markup."""

from __future__ import annotations

import html

# In the panel's own HTML, so it looks right in JupyterLab's light and dark
# themes alike; scoped to .nbt-panel so nothing else on the page changes.
STYLE = """<style>
.nbt-panel {
  border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px;
  background: var(--jp-layout-color1, white);
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  padding: 4px 10px 8px 10px;
}
.nbt-panel .widget-html-content {
  color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));
  font-size: var(--jp-ui-font-size1, 13px);
}
.nbt-panel .nbt-what .widget-html-content,
.nbt-panel .nbt-error .widget-html-content,
.nbt-panel .nbt-add-error .widget-html-content {
  line-height: 1.4; white-space: normal; align-self: center;
}
.nbt-panel .nbt-title .widget-html-content { font-weight: 600; }
.nbt-panel .nbt-muted, .nbt-panel .nbt-summary .widget-html-content,
.nbt-panel .nbt-conns .widget-html-content {
  color: var(--jp-ui-font-color2, #616161);
}
.nbt-panel .nbt-row { border-top: 1px solid var(--jp-border-color2, #e0e0e0); }
.nbt-panel .nbt-line { align-items: center; }
.nbt-panel .nbt-traffic .widget-html-content {
  font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px);
}
.nbt-panel .nbt-error .widget-html-content,
.nbt-panel .nbt-add-error .widget-html-content {
  color: var(--jp-error-color1, #c62828);
}
.nbt-panel .nbt-link { color: var(--jp-content-link-color, #1976d2); }
.nbt-panel .nbt-note { font-size: var(--jp-ui-font-size0, 11px); }
.nbt-panel .nbt-new input { font-family: var(--jp-code-font-family, monospace); }
</style>"""


def error_html(text: str) -> str:
    if not text:
        return ""
    # pre-wrap: a SpecError's list of accepted forms is one per line.
    return (
        "<span class='nbt-error-text' style='white-space:pre-wrap'>"
        f"{html.escape(text, quote=False)}</span>"
    )
