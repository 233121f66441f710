import NIOCore

// Field encodings shared by all frames (docs/protocol.md §2.2). All integers are big-endian.

/// Address type bytes, the same values SOCKS5 uses (RFC 1928 §5).
enum AddressType {
    static let ipv4: UInt8 = 1
    static let name: UInt8 = 3
    static let ipv6: UInt8 = 4
}

extension ByteBuffer {
    // MARK: writing

    /// `u16 length | UTF-8 bytes`. Strings longer than 65535 bytes are cut at a character boundary.
    @discardableResult
    public mutating func writeWireString(_ s: String) -> Int {
        var utf8 = Array(s.utf8)
        if utf8.count > Int(UInt16.max) {
            var cut = Substring(s)
            while cut.utf8.count > Int(UInt16.max) { cut = cut.dropLast() }
            utf8 = Array(cut.utf8)
        }
        return writeInteger(UInt16(utf8.count)) + writeBytes(utf8)
    }

    @discardableResult
    public mutating func writeAddress(_ a: IPAddress) -> Int {
        switch a {
        case .v4(let v):
            return writeInteger(AddressType.ipv4) + writeInteger(v)
        case .v6(let b):
            return writeInteger(AddressType.ipv6) + writeBytes(b)
        }
    }

    @discardableResult
    public mutating func writeHost(_ h: Host) -> Int {
        switch h {
        case .ip(let a):
            return writeAddress(a)
        case .name(let n):
            var bytes = Array(n.utf8.prefix(256))
            if bytes.count > 255 {
                // Cut at 255 bytes, backing off to the start of a character: a cut inside one would
                // be invalid UTF-8, which the peer rejects (docs/protocol.md §2.2).
                var end = 255
                while end > 0 && bytes[end] & 0xc0 == 0x80 { end -= 1 }
                bytes.removeSubrange(end...)
            }
            return writeInteger(AddressType.name) + writeInteger(UInt8(bytes.count)) + writeBytes(bytes)
        }
    }

    @discardableResult
    public mutating func writeEndpoint(_ e: Endpoint) -> Int {
        writeHost(e.host) + writeInteger(e.port)
    }

    // MARK: reading (nil when truncated; callers turn nil into WireError.truncated)

    public mutating func readWireString() throws -> String? {
        guard let n = getInteger(at: readerIndex, as: UInt16.self),
            readableBytes >= 2 + Int(n)
        else { return nil }
        moveReaderIndex(forwardBy: 2)
        let bytes = readBytes(length: Int(n))!
        // Decoding repairs invalid UTF-8 (with U+FFFD, sometimes of the same length): insist on the
        // very same bytes, so strings are valid UTF-8 and round-trip exactly.
        let s = String(decoding: bytes, as: UTF8.self)
        guard s.utf8.elementsEqual(bytes) else {
            throw WireError.invalidValue(field: "string", value: "not valid UTF-8")
        }
        return s
    }

    public mutating func readHost(allowName: Bool = true) throws -> Host? {
        guard let t = getInteger(at: readerIndex, as: UInt8.self) else { return nil }
        switch t {
        case AddressType.ipv4:
            guard readableBytes >= 5 else { return nil }
            moveReaderIndex(forwardBy: 1)
            return .ip(.v4(readInteger(as: UInt32.self)!))
        case AddressType.ipv6:
            guard readableBytes >= 17 else { return nil }
            moveReaderIndex(forwardBy: 1)
            return .ip(.v6(readBytes(length: 16)!))
        case AddressType.name:
            guard allowName else { throw WireError.invalidValue(field: "address type", value: "name not allowed here") }
            guard let n = getInteger(at: readerIndex + 1, as: UInt8.self), readableBytes >= 2 + Int(n) else {
                return nil
            }
            guard n > 0 else { throw WireError.invalidValue(field: "host name", value: "empty") }
            moveReaderIndex(forwardBy: 2)
            let bytes = readBytes(length: Int(n))!
            let name = String(decoding: bytes, as: UTF8.self)
            guard name.utf8.elementsEqual(bytes) else {
                throw WireError.invalidValue(field: "host name", value: "not valid UTF-8")
            }
            return .name(name)
        default:
            throw WireError.invalidValue(field: "address type", value: String(t))
        }
    }

    public mutating func readAddress() throws -> IPAddress? {
        guard let h = try readHost(allowName: false) else { return nil }
        guard case .ip(let a) = h else { return nil }
        return a
    }

    public mutating func readEndpoint(allowName: Bool = true) throws -> Endpoint? {
        let save = readerIndex
        guard let h = try readHost(allowName: allowName), let port = readInteger(as: UInt16.self) else {
            moveReaderIndex(to: save)
            return nil
        }
        return Endpoint(host: h, port: port)
    }
}
