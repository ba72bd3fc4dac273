"""Recording every broadcast as HLS (MPEG-TS segments, RFC 8216) while it happens.

- manager: which broadcast records into which recording; grace period; crash recovery;
  `recording.ready`; deleting files.
- recorder: one recording's queue (filled on the event loop) and worker thread.
- depacketize: RTP packets to frames (tolerating reordering), RTP time to seconds.
- video: H.264 remuxed without transcoding (SPS/PPS kept in front of IDR frames);
  VP8 transcoded to H.264 with libx264, for the recording only.
- audio: Opus to AAC (ADTS), gaps filled with silence so A/V stay aligned.
- segmenter: segments cut at keyframes near the target length; the playlist.
- hls: the recording directory on disk (playlist, meta, finalize after a crash).

Importing this package loads nothing heavy; the PyAV-based modules load on use.
"""
