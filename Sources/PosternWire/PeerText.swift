/// Text a peer chose, made safe to log. A GOAWAY message, a FAILED message, a host or interface
/// name, a software version or a certificate name reaches a log line, a terminal and whatever parses
/// the log afterwards: a newline there forges a log line, an escape sequence drives the terminal of
/// whoever reads it, a bidi override makes the line read differently than it is, and a 16 MiB
/// message fills the disk. Every log site that shows such text shows `sanitized(_:)` of it.
public enum PeerText {
    /// Longer text is cut, with an ellipsis: no message worth reading is longer.
    public static let defaultMaxLength = 256

    /// `text` with every control character escaped as `\u{hex}` (C0 including newline and tab, DEL,
    /// C1, the bidi controls U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, and the line and
    /// paragraph separators U+2028, U+2029), and cut to at most `maxLength` Unicode scalars, the last
    /// of them "…", when longer. An escape is never cut in half. Other text, backslashes included,
    /// is kept as it is.
    public static func sanitized(_ text: String, maxLength: Int = defaultMaxLength) -> String {
        precondition(maxLength >= 1, "maxLength must leave room for the ellipsis")
        if text.utf8.count <= maxLength, !text.unicodeScalars.contains(where: isControl) { return text }
        var out: [Unicode.Scalar] = []
        // Where the text is cut if it turns out too long: the last piece boundary that leaves room for the ellipsis.
        var cut = 0
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            } else {
                out.append(scalar)
            }
            if out.count > maxLength {
                out.removeSubrange(cut...)
                out.append("…")
                break
            }
            if out.count < maxLength { cut = out.count }
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: out)
        return String(view)
    }

    /// The characters `sanitized(_:)` escapes.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x061C, 0x200E, 0x200F, 0x2028, 0x2029: return true
        case 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
