"""Campaign reports: ``python run.py report --program P [--date D]`` renders one
self-contained HTML file (``reports.html``) from numbers computed over the store
(``reports.data``) with matplotlib charts (``reports.charts``)."""
