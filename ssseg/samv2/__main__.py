import sys

from ssseg.samv2.cli import main

sys.exit(main())
