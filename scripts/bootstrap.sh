# Sourced by ./kidp-ops and ./test: make .venv from nothing and keep it in step with
# pyproject.toml. Both commands share one install (kidp-ops with its [dev] extras), so
# alternating them never reinstalls; only a changed pyproject.toml does.
ensure_venv() {
  local extras=dev python stamp want
  python="${KIDP_PYTHON:-}"
  if [ -z "$python" ]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"
        break
      fi
    done
  fi
  if [ -z "$python" ]; then
    echo "kidp-ops needs Python 3.11 or newer (none found on PATH; set KIDP_PYTHON)" >&2
    exit 2
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $("$python" --version)..." >&2
    "$python" -m venv .venv
  fi
  stamp=.venv/.kidp-installed
  want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1) [$extras]"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing kidp-ops${extras:+ with [$extras]} into .venv (first run takes a minute)..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 |
      grep -v "^WARNING: Location" >&2 || true
    .venv/bin/python -c 'import kidp_ops.cli' || { echo "install failed" >&2; exit 1; }
    echo "$want" >"$stamp"
  fi
}

# Debian tools some tests drive (tmux for the real-terminal test, kubectl for
# `kubectl kustomize deploy/`, ...): installed when missing and we may (root, apt-get
# present); otherwise the tests that need them say so. Each argument is a command name,
# or `command:package` when the Debian package is named differently
# (`kubectl:kubernetes-client`).
ensure_debian_tools() {
  local spec tool package missing=()
  for spec in "$@"; do
    tool="${spec%%:*}"
    package="${spec#*:}"
    command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${missing[*]} with apt-get..." >&2
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
      echo "apt-get could not install ${missing[*]}" >&2
  else
    echo "missing ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
  fi
}
