import NIOCore

// Writing and reading UDP channel datagrams (docs/protocol.md §9). Sealing is PosternCore's
// (`UDPChannelCipher`); here are only the cleartext header and the message before sealing.

extension ByteBuffer {
    /// Writes the 20-byte header (§9.2).
    @discardableResult
    public mutating func writeUDPChannelHeader(_ h: UDPChannelHeader) -> Int {
        writeInteger(UDPChannelHeader.kind) + writeInteger(UInt8(0)) + writeInteger(h.channelID) + writeInteger(h.sessionID)
            + writeInteger(h.counter)
    }

    /// Reads the header of a whole received datagram, checking, in this order, its size (at most
    /// `maxDatagramSize`, at least header and tag), the kind and the reserved byte. Consumes the header
    /// only when it is valid.
    public mutating func readUDPChannelHeader() throws -> UDPChannelHeader {
        let size = readableBytes
        guard size <= UDPChannelHeader.maxDatagramSize else {
            throw UDPChannelError.tooLarge(size: size, limit: UDPChannelHeader.maxDatagramSize)
        }
        guard size >= UDPChannelHeader.overhead + 1 else { throw UDPChannelError.truncated(what: "datagram") }
        let kind = getInteger(at: readerIndex, as: UInt8.self)!
        guard kind == UDPChannelHeader.kind else { throw UDPChannelError.unknownKind(kind) }
        let reserved = getInteger(at: readerIndex + 1, as: UInt8.self)!
        guard reserved == 0 else { throw UDPChannelError.invalidValue(field: "reserved byte", value: String(reserved)) }
        moveReaderIndex(forwardBy: 2)
        return UDPChannelHeader(
            channelID: readInteger(as: UInt16.self)!, sessionID: readInteger(as: UInt64.self)!, counter: readInteger(as: UInt64.self)!)
    }

    /// Writes a message as it is sealed (§9.3).
    @discardableResult
    public mutating func writeUDPChannelMessage(_ m: UDPChannelMessage) -> Int {
        let start = writerIndex
        writeInteger(m.type)
        switch m {
        case .ping(let timestamp, let receiving):
            writeInteger(timestamp)
            writeInteger(UInt8(receiving ? 1 : 0))
        case .pong(let echo):
            writeInteger(echo)
        case .datagram(let portID, let peer, var bytes):
            writeInteger(portID)
            writeEndpoint(peer)
            writeBuffer(&bytes)
        case .packet(var bytes):
            writeBuffer(&bytes)
        }
        return writerIndex - start
    }

    /// Reads one opened message; it must take all the readable bytes.
    public mutating func readUDPChannelMessage() throws -> UDPChannelMessage {
        guard let type = readInteger(as: UInt8.self) else { throw UDPChannelError.truncated(what: "message") }
        let name = UDPChannelMessage.name(of: type)
        func integer<T: FixedWidthInteger>(_ buffer: inout ByteBuffer) throws -> T {
            guard let v = buffer.readInteger(as: T.self) else { throw UDPChannelError.truncated(what: name) }
            return v
        }
        let message: UDPChannelMessage
        switch type {
        case UDPChannelMessage.pingType:
            let timestamp: UInt64 = try integer(&self)
            let receiving: UInt8 = try integer(&self)
            guard receiving <= 1 else { throw UDPChannelError.invalidValue(field: "receiving", value: String(receiving)) }
            message = .ping(timestamp: timestamp, receiving: receiving == 1)
        case UDPChannelMessage.pongType:
            message = .pong(echo: try integer(&self))
        case UDPChannelMessage.datagramType:
            let portID: UInt32 = try integer(&self)
            let peer: Endpoint?
            do {
                peer = try readEndpoint(allowName: false)
            } catch WireError.invalidValue(let field, let value) {
                throw UDPChannelError.invalidValue(field: field, value: value)
            } catch {
                throw UDPChannelError.invalidValue(field: "peer", value: "\(error)")
            }
            guard let peer else { throw UDPChannelError.truncated(what: name) }
            message = .datagram(portID: portID, peer: peer, bytes: readSlice(length: readableBytes)!)
        case UDPChannelMessage.packetType:
            message = .packet(readSlice(length: readableBytes)!)
        default:
            throw UDPChannelError.unknownMessageType(type)
        }
        guard readableBytes == 0 else { throw UDPChannelError.trailingBytes(message: name, count: readableBytes) }
        return message
    }
}
