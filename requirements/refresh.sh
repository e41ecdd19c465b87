#!/usr/bin/env bash
# Rewrite requirements/tested.txt from the active venv. Run it in a venv made by the README's test command,
# after the full suite passed there: `bash requirements/refresh.sh`.
set -euo pipefail
cd "$(dirname "$0")"
{
  echo "# Exact versions the full test suite passed with ($(python -c 'import platform; print(f"Python {platform.python_version()}, {platform.machine()}")'), CPU)."
  echo "# The README's install commands and .ci/run install with \`-c requirements/tested.txt\`; pyproject.toml keeps"
  echo "# the ranges users get. Refresh: \`bash requirements/refresh.sh\` in a venv made by the README's test command."
  pip freeze --exclude-editable 2>/dev/null | grep -v -i '^scaling[= ]'
} > tested.txt.new
mv tested.txt.new tested.txt
echo "requirements/tested.txt: $(grep -vc '^#' tested.txt) pinned packages"
