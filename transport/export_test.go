package transport

// EncodeClientFrame encodes a masked client frame, for the external tests.
var EncodeClientFrame = encodeFrame
