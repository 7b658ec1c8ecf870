"""Every HTML page the project makes, rendered from templates (`reports/templates/`).

Producers (pipeline/, monitoring/, release/, provenance/) gather plain data and
hand it to `reports.page.render`; they build no HTML themselves. The pieces:

- `page`: the template environment, the report kinds and their file names in a
  reports directory, and the bar of links between the pages that exist there;
- `formatting`: how numbers read in pages and text (also used by JSON output);
- `charts`: the charts, drawn as inline SVG;
- `graph_layout`: where the boxes and edges of a directed graph go, apart from drawing them.

Pages open from disk anywhere: inline SVG, no script, no network.
"""
