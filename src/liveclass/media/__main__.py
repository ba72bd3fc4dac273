"""`python -m liveclass.media`: run the embedded media server (same as liveclass.media.server)."""

from liveclass.media.server import main

raise SystemExit(main())
