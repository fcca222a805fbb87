"""Side-by-side benchmark of the orders service against the Flask floor and a Flask-Caching peer.

Run it with ``make bench`` (see ``python -m bench --help``); results land in ``bench/results/``.
"""
