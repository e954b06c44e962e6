# CI step (run by .ci/run inside the CI venv): build the documentation with warnings as
# errors, executing every example, then check every code example in the docs and docstrings.
set -euo pipefail
python -c "import sphinx, furo, sphinx_gallery, myst_parser" 2>/dev/null \
  || pip install "sphinx>=7" furo "sphinx-gallery>=0.15" "myst-parser>=2" matplotlib
python -m sphinx -W --keep-going -b html docs docs/_build/html
python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest
