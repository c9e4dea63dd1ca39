/// Strings from received bytes, refused when they are not valid UTF-8.
///
/// `String(validating:as:)` is generic over the encoding and, called on raw
/// buffers, looked up type metadata on every call: a third of the client's
/// CPU when streaming events. Names and types are nearly always ASCII, so
/// that case is checked with a plain loop and built with the specialized
/// `String(decoding:as:)` (which cannot be lossy for ASCII); anything else
/// goes through the full validation.
public enum UTF8Validation {
    @inlinable
    public static func string(_ bytes: UnsafeRawBufferPointer) -> String? {
        var ascii = true
        for byte in bytes where byte >= 0x80 {
            ascii = false
            break
        }
        if ascii { return String(decoding: bytes, as: UTF8.self) }
        return String(validating: bytes, as: UTF8.self)
    }
}
