"""The browser login portal: pages, forms and the stylesheet (see docs/portal.md)."""
