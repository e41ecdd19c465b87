"""``python -m scaling ...`` (also what ``deepspeed --module scaling train ...`` runs)."""

import sys

from scaling.cli.main import main

sys.exit(main())
