"""The embedded media server: WHIP ingest, WHEP playback, RTP forwarding without
transcoding, HLS recording. No Django here (an import-linter contract enforces it).
Entry point: `liveclass.media.server.main`. The module map is in docs/design.md.
"""
