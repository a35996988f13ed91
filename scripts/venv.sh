# Sourced by scripts/test, scripts/docs and scripts/bench (from the repository's root): the
# repository's .venv with certkit and its test and docs extras, made on first use, so each of
# them works from a fresh clone.  PYTHON picks the interpreter (default python3).
venv_install() {
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip \
        >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
}

# The .venv, made and filled when it is missing or lacks a tool (scripts/demo makes one
# with certkit alone; an interrupted install leaves one half-filled).
venv_create() {
    if [ ! -x .venv/bin/python ]; then
        echo "Setting up .venv with certkit and its test and docs tools (once)..." >&2
        "${PYTHON:-python3}" -m venv .venv
    fi
}

venv_ensure() {
    venv_create
    local tool
    for tool in certkit pytest mkdocs; do
        if [ ! -x ".venv/bin/$tool" ]; then
            venv_install
            return
        fi
    done
}
