# Sourced by the CI steps that need a second environment: copies the checkout (without the main
# environment, build outputs and compiled libraries) into a temporary folder removed on exit,
# enters it and leaves the main environment.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar --exclude=./.venv --exclude=./build --exclude='*.so' --exclude=./docs/_build -cf - . | tar -xf - -C "$work"
cd "$work"
deactivate 2>/dev/null || true
