"""``python -m bench``: the retrieval-quality benchmark (see ``bench/retrieval.py``)."""

from bench.retrieval import main

raise SystemExit(main())
