#!/usr/bin/env python3
"""Generate the synthetic action-recognition set; same arguments as ``python -m datasets.synthetic``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.synthetic import main  # noqa: E402

if __name__ == "__main__":
    main()
