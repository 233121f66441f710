import NIOCore

// Writing and reading whole frames (docs/protocol.md §2-§6).

extension ByteBuffer {
    /// Writes the 6-byte frame header.
    @discardableResult
    public mutating func writeFrameHeader(type: UInt8, payloadLength: Int) -> Int {
        writeInteger(UInt32(payloadLength)) + writeInteger(type) + writeInteger(UInt8(0))
    }

    /// Writes the header of a DATA frame and its port id; the caller sends `count` bytes after it.
    /// Lets the relay send a socket's buffer without copying it into the frame.
    @discardableResult
    public mutating func writeDataPrefix(portID: UInt32, count: Int) -> Int {
        writeFrameHeader(type: Frame.Data.type, payloadLength: Frame.Data.prefixLength + count)
            + writeInteger(portID)
    }

    /// Writes one whole frame, header and payload.
    @discardableResult
    public mutating func writeFrame(_ frame: Frame) -> Int {
        let start = writerIndex
        writeFrameHeader(type: frame.type, payloadLength: 0)  // length patched below
        let payloadStart = writerIndex
        writeFramePayload(frame)
        let length = writerIndex - payloadStart
        setInteger(UInt32(length), at: start)
        return writerIndex - start
    }

    mutating func writeFramePayload(_ frame: Frame) {
        switch frame {
        case .hello(let m):
            writeBytes(Frame.magic)
            writeInteger(m.version)
            writeWireString(m.name)
            writeWireString(m.softwareVersion)
            writeNonce(m.nonce)
            writeInteger(m.initialWindow)
            writeInteger(m.maxPayload)
        case .challenge(let m):
            writeInteger(m.version)
            writeNonce(m.nonce)
        case .authenticate(let m):
            writeNonce(m.proof)
        case .welcome(let m):
            writeInteger(m.sessionID)
            writeNonce(m.proof)
            writeInteger(m.keepaliveIntervalMillis)
            writeInteger(m.deadTimeoutMillis)
            writeInteger(m.initialWindow)
            writeInteger(m.maxPayload)
        case .refused(let m):
            writeInteger(m.code.rawValue)
            writeWireString(m.message)
        case .environment(let e):
            writeEnvironment(e)
        case .ping(let m), .pong(let m):
            writeInteger(m.token)
        case .goAway(let m):
            writeInteger(m.code.rawValue)
            writeWireString(m.message)
        case .open(let m):
            writeInteger(m.requestID)
            writeInteger(m.transport.rawValue)
            writeInteger(UInt8(m.exact ? 1 : 0))
            writeAddress(m.address)
            writeInteger(m.port)
            if let flags = m.flags { writeInteger(flags.rawValue) }
        case .redirect(let m):
            writeInteger(m.requestID)
            writeInteger(UInt8(m.exact ? 1 : 0))
            writeAddress(m.address)
            writeInteger(m.port)
        case .connect(let m):
            writeInteger(m.requestID)
            writeInteger(m.portID)
            writeEndpoint(m.destination)
        case .listen(let m):
            writeInteger(m.requestID)
            writeInteger(m.portID)
            writeInteger(m.backlog)
        case .close(let m):
            writeInteger(m.requestID)
            writeInteger(m.portID)
        case .done(let m):
            writeInteger(m.requestID)
            writeInteger(m.portID)
            writeEndpoint(m.local)
        case .failed(let m):
            writeInteger(m.requestID)
            writeInteger(m.code.rawValue)
            writeInteger(m.errno)
            writeWireString(m.message)
        case .data(var m):
            writeInteger(m.portID)
            writeBuffer(&m.bytes)
        case .datagram(var m):
            writeInteger(m.portID)
            writeEndpoint(m.peer)
            writeBuffer(&m.bytes)
        case .window(let m):
            writeInteger(m.portID)
            writeInteger(m.increment)
        case .accepted(let m):
            writeInteger(m.listenerID)
            writeInteger(m.portID)
            writeEndpoint(m.peer)
        case .finished(let m):
            writeInteger(m.portID)
        case .reset(let m):
            writeInteger(m.portID)
            writeInteger(m.code.rawValue)
        case .tun(let m):
            writeInteger(m.requestID)
            writeInteger(m.mtu)
            if let flags = m.flags { writeInteger(flags.rawValue) }
        case .tunReady(let m):
            writeInteger(m.requestID)
            writeInteger(m.mtu)
            writeAddress(m.address.address)
            writeInteger(m.address.prefixLength)
            let prefixes = m.prefixes.prefix(Frame.TunReady.maxPrefixes)
            writeInteger(UInt16(prefixes.count))
            for p in prefixes {
                writeAddress(p.address)
                writeInteger(p.prefixLength)
            }
            if let second = m.secondAddress {
                writeAddress(second.address)
                writeInteger(second.prefixLength)
            }
        case .tunClose(let m):
            writeInteger(m.requestID)
            writeWireString(m.message)
        case .denied(let m):
            writeInteger(m.portID)
            writeInteger(m.count)
        case .tunStats(let m):
            writeInteger(m.toLAN)
            writeInteger(m.fromLAN)
            writeInteger(m.errorsSent)
            let dropped = m.dropped.prefix(Frame.TunStats.maxReasons)
            writeInteger(UInt8(dropped.count))
            for d in dropped {
                var reason = Substring(d.reason)
                while reason.utf8.count > Frame.TunStats.maxReasonLength { reason = reason.dropLast() }
                writeWireString(String(reason))
                writeInteger(d.count)
            }
            if let device = m.device {
                writeInteger(UInt8(device.asked ? 1 : 0))
                writeInteger(device.offloads)
                writeInteger(device.superPacketsRead)
                writeInteger(device.coalescedWrites)
                writeInteger(device.offloadRefused)
            }
        case .packet(var m):
            writeBuffer(&m.bytes)
        case .echo(let m):
            writeInteger(m.requestID)
            writeHost(m.host)
            writeInteger(m.ttl)
            writeInteger(m.sequence)
            writeInteger(m.size)
            writeInteger(m.timeoutMillis)
            if case .name = m.host { writeInteger(m.family.rawValue) }
        case .echoReply(let m):
            writeInteger(m.requestID)
            writeInteger(m.outcome.rawValue)
            writeInteger(m.icmpType)
            writeInteger(m.icmpCode)
            writeAddress(m.from)
            writeInteger(m.ttl)
            writeInteger(m.size)
            writeInteger(m.rttMicros)
        }
    }

    /// Nonces and proofs are always 32 bytes; the encoder pads or cuts so the wire stays fixed-size.
    private mutating func writeNonce(_ bytes: [UInt8]) {
        var b = Array(bytes.prefix(32))
        if b.count < 32 { b += [UInt8](repeating: 0, count: 32 - b.count) }
        writeBytes(b)
    }

    mutating func writeEnvironment(_ e: MediatorEnvironment) {
        writeWireString(e.hostname)
        writeWireString(e.softwareVersion)
        writeInteger(e.capabilities.rawValue)
        let interfaces = e.interfaces.prefix(Int(UInt16.max))
        writeInteger(UInt16(interfaces.count))
        for i in interfaces {
            writeInteger(i.index)
            writeWireString(i.name)
            let mac = i.mac.prefix(255)
            writeInteger(UInt8(mac.count))
            writeBytes(mac)
            writeInteger(i.mtu)
            writeInteger(UInt8(i.isUp ? 1 : 0))
            let addresses = i.addresses.prefix(Int(UInt16.max))
            writeInteger(UInt16(addresses.count))
            for a in addresses {
                writeAddress(a.address)
                writeInteger(a.prefixLength)
            }
        }
        let routes = e.routes.prefix(Int(UInt16.max))
        writeInteger(UInt16(routes.count))
        for r in routes {
            writeAddress(r.destination.address)
            writeInteger(r.destination.prefixLength)
            if let g = r.gateway {
                writeInteger(UInt8(1))
                writeAddress(g)
            } else {
                writeInteger(UInt8(0))
            }
            writeInteger(r.interfaceIndex)
        }
    }
}

// MARK: - Decoding

extension Frame {
    /// Decodes one payload of the given type. The payload must be consumed exactly.
    public static func decode(type: UInt8, payload: inout ByteBuffer) throws -> Frame {
        var r = PayloadReader(buffer: payload, frame: Frame.name(of: type))
        let frame: Frame
        switch type {
        case Hello.type:
            let magic = try r.bytes(4)
            guard magic == Frame.magic else { throw WireError.badMagic }
            frame = .hello(
                Hello(
                    version: try r.int(), name: try r.string(), softwareVersion: try r.string(),
                    nonce: try r.bytes(32), initialWindow: try r.int(), maxPayload: try r.int()))
        case Challenge.type:
            frame = .challenge(Challenge(version: try r.int(), nonce: try r.bytes(32)))
        case Authenticate.type:
            frame = .authenticate(Authenticate(proof: try r.bytes(32)))
        case Welcome.type:
            frame = .welcome(
                Welcome(
                    sessionID: try r.int(), proof: try r.bytes(32), keepaliveIntervalMillis: try r.int(),
                    deadTimeoutMillis: try r.int(), initialWindow: try r.int(), maxPayload: try r.int()))
        case Refused.type:
            frame = .refused(Refused(code: ErrorCode(rawValue: try r.int()), message: try r.string()))
        case MediatorEnvironment.type:
            frame = .environment(try r.environment())
        case Ping.pingType:
            frame = .ping(Ping(token: try r.int()))
        case Ping.pongType:
            frame = .pong(Ping(token: try r.int()))
        case GoAway.type:
            frame = .goAway(GoAway(code: ErrorCode(rawValue: try r.int()), message: try r.string()))
        case Open.type:
            var open = Open(
                requestID: try r.int(), transport: try r.transport(), exact: try r.flag("exact"), address: try r.address(),
                port: try r.int())
            if !r.isEmpty { open.flags = Open.Flags(rawValue: try r.int()) }
            frame = .open(open)
        case Redirect.type:
            frame = .redirect(
                Redirect(requestID: try r.int(), exact: try r.flag("exact"), address: try r.address(), port: try r.int()))
        case Connect.type:
            frame = .connect(Connect(requestID: try r.int(), portID: try r.int(), destination: try r.endpoint()))
        case Listen.type:
            frame = .listen(Listen(requestID: try r.int(), portID: try r.int(), backlog: try r.int()))
        case Close.type:
            frame = .close(Close(requestID: try r.int(), portID: try r.int()))
        case Done.type:
            frame = .done(Done(requestID: try r.int(), portID: try r.int(), local: try r.endpoint(allowName: false)))
        case Failed.type:
            frame = .failed(
                Failed(
                    requestID: try r.int(), code: ErrorCode(rawValue: try r.int()), errno: try r.int(),
                    message: try r.string()))
        case Data.type:
            frame = .data(Data(portID: try r.int(), bytes: r.rest()))
        case Datagram.type:
            frame = .datagram(Datagram(portID: try r.int(), peer: try r.endpoint(allowName: false), bytes: r.rest()))
        case Window.type:
            let portID: UInt32 = try r.int()
            let increment: UInt32 = try r.int()
            guard increment > 0 else { throw WireError.invalidValue(field: "window increment", value: "0") }
            frame = .window(Window(portID: portID, increment: increment))
        case Accepted.type:
            frame = .accepted(
                Accepted(listenerID: try r.int(), portID: try r.int(), peer: try r.endpoint(allowName: false)))
        case Finished.type:
            frame = .finished(Finished(portID: try r.int()))
        case Reset.type:
            frame = .reset(Reset(portID: try r.int(), code: ErrorCode(rawValue: try r.int())))
        case Tun.type:
            let requestID: UInt32 = try r.int()
            let mtu: UInt16 = try r.int()
            var flags: Tun.Flags?
            if !r.isEmpty { flags = Tun.Flags(rawValue: try r.int()) }
            frame = .tun(Tun(requestID: requestID, mtu: mtu, flags: flags))
        case TunReady.type:
            let requestID: UInt32 = try r.int()
            let mtu: UInt16 = try r.int()
            let address = try r.prefix()
            let count: UInt16 = try r.int()
            guard count <= TunReady.maxPrefixes else {
                throw WireError.invalidValue(field: "prefix count", value: String(count))
            }
            var prefixes: [MediatorEnvironment.AddressPrefix] = []
            for _ in 0..<count { prefixes.append(try r.prefix()) }
            var second: MediatorEnvironment.AddressPrefix?
            if !r.isEmpty {
                let s = try r.prefix()
                guard s.address.isIPv6 != address.address.isIPv6 else {
                    throw WireError.invalidValue(field: "second address", value: "\(s.address) is of the first address's family")
                }
                second = s
            }
            frame = .tunReady(TunReady(requestID: requestID, mtu: mtu, address: address, prefixes: prefixes, secondAddress: second))
        case TunClose.type:
            frame = .tunClose(TunClose(requestID: try r.int(), message: try r.string()))
        case Denied.type:
            let portID: UInt32 = try r.int()
            let count: UInt32 = try r.int()
            guard count > 0 else { throw WireError.invalidValue(field: "count", value: "0") }
            frame = .denied(Denied(portID: portID, count: count))
        case TunStats.type:
            let toLAN: UInt64 = try r.int()
            let fromLAN: UInt64 = try r.int()
            let errorsSent: UInt64 = try r.int()
            let count: UInt8 = try r.int()
            guard count <= TunStats.maxReasons else {
                throw WireError.invalidValue(field: "reason count", value: String(count))
            }
            var dropped: [(reason: String, count: UInt64)] = []
            for _ in 0..<count {
                let reason = try r.string()
                guard !reason.isEmpty, reason.utf8.count <= TunStats.maxReasonLength else {
                    throw WireError.invalidValue(field: "reason", value: String(reason.prefix(TunStats.maxReasonLength)))
                }
                let n: UInt64 = try r.int()
                dropped.append((reason: reason, count: n))
            }
            var device: TunStats.Device?
            if !r.isEmpty {
                device = TunStats.Device(
                    asked: try r.flag("offloads asked"), offloads: try r.int(), superPacketsRead: try r.int(), coalescedWrites: try r.int(),
                    offloadRefused: try r.int())
            }
            frame = .tunStats(TunStats(toLAN: toLAN, fromLAN: fromLAN, errorsSent: errorsSent, dropped: dropped, device: device))
        case Packet.type:
            frame = .packet(Packet(bytes: r.rest()))
        case Echo.type:
            let requestID: UInt32 = try r.int()
            let host = try r.host()
            let ttl: UInt8 = try r.int()
            guard ttl > 0 else { throw WireError.invalidValue(field: "ttl", value: "0") }
            let sequence: UInt16 = try r.int()
            let size: UInt16 = try r.int()
            guard size <= Echo.maxSize else { throw WireError.invalidValue(field: "echo size", value: String(size)) }
            let timeoutMillis: UInt32 = try r.int()
            var family = Echo.Family.any
            if case .name = host {
                let raw: UInt8 = try r.int()
                guard let f = Echo.Family(rawValue: raw) else { throw WireError.invalidValue(field: "echo family", value: String(raw)) }
                family = f
            }
            frame = .echo(
                Echo(
                    requestID: requestID, host: host, family: family, ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeoutMillis
                ))
        case EchoReply.type:
            let requestID: UInt32 = try r.int()
            let rawOutcome: UInt8 = try r.int()
            guard let outcome = EchoReply.Outcome(rawValue: rawOutcome) else {
                throw WireError.invalidValue(field: "echo outcome", value: String(rawOutcome))
            }
            frame = .echoReply(
                EchoReply(
                    requestID: requestID, outcome: outcome, icmpType: try r.int(), icmpCode: try r.int(), from: try r.address(),
                    ttl: try r.int(), size: try r.int(), rttMicros: try r.int()))
        default:
            throw WireError.unknownType(type)
        }
        try r.finish()
        return frame
    }

    /// Human name of a frame type, for messages and logs.
    public static func name(of type: UInt8) -> String {
        switch type {
        case Hello.type: return "HELLO"
        case Challenge.type: return "CHALLENGE"
        case Authenticate.type: return "AUTHENTICATE"
        case Welcome.type: return "WELCOME"
        case Refused.type: return "REFUSED"
        case MediatorEnvironment.type: return "ENVIRONMENT"
        case Ping.pingType: return "PING"
        case Ping.pongType: return "PONG"
        case GoAway.type: return "GOAWAY"
        case Open.type: return "OPEN"
        case Redirect.type: return "REDIRECT"
        case Connect.type: return "CONNECT"
        case Listen.type: return "LISTEN"
        case Close.type: return "CLOSE"
        case Done.type: return "DONE"
        case Failed.type: return "FAILED"
        case Data.type: return "DATA"
        case Datagram.type: return "DATAGRAM"
        case Window.type: return "WINDOW"
        case Accepted.type: return "ACCEPTED"
        case Finished.type: return "FINISHED"
        case Reset.type: return "RESET"
        case Tun.type: return "TUN"
        case TunReady.type: return "TUN_READY"
        case Packet.type: return "PACKET"
        case TunStats.type: return "TUN_STATS"
        case TunClose.type: return "TUN_CLOSE"
        case Denied.type: return "DENIED"
        case Echo.type: return "ECHO"
        case EchoReply.type: return "ECHO_REPLY"
        default: return "0x" + String(type, radix: 16)
        }
    }

    public var name: String { Frame.name(of: type) }
}

/// Reads fields off one payload, turning a short read into `WireError.truncated`.
struct PayloadReader {
    var buffer: ByteBuffer
    let frame: String

    mutating func int<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        guard let v = buffer.readInteger(as: T.self) else { throw WireError.truncated(frame: frame) }
        return v
    }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        guard let v = buffer.readBytes(length: n) else { throw WireError.truncated(frame: frame) }
        return v
    }

    mutating func string() throws -> String {
        guard let v = try buffer.readWireString() else { throw WireError.truncated(frame: frame) }
        return v
    }

    mutating func flag(_ field: String) throws -> Bool {
        let v: UInt8 = try int()
        guard v <= 1 else { throw WireError.invalidValue(field: field, value: String(v)) }
        return v == 1
    }

    mutating func transport() throws -> Frame.Transport {
        let v: UInt8 = try int()
        guard let t = Frame.Transport(rawValue: v) else { throw WireError.invalidValue(field: "transport", value: String(v)) }
        return t
    }

    mutating func address() throws -> IPAddress {
        guard let v = try buffer.readAddress() else { throw WireError.truncated(frame: frame) }
        return v
    }

    mutating func host() throws -> Host {
        guard let v = try buffer.readHost() else { throw WireError.truncated(frame: frame) }
        return v
    }

    mutating func endpoint(allowName: Bool = true) throws -> Endpoint {
        guard let v = try buffer.readEndpoint(allowName: allowName) else { throw WireError.truncated(frame: frame) }
        return v
    }

    var isEmpty: Bool { buffer.readableBytes == 0 }

    mutating func rest() -> ByteBuffer {
        buffer.readSlice(length: buffer.readableBytes)!
    }

    func finish() throws {
        if buffer.readableBytes > 0 { throw WireError.trailingBytes(frame: frame, count: buffer.readableBytes) }
    }

    mutating func environment() throws -> MediatorEnvironment {
        var e = MediatorEnvironment(
            hostname: try string(), softwareVersion: try string(),
            capabilities: .init(rawValue: try int()))
        let interfaceCount: UInt16 = try int()
        for _ in 0..<interfaceCount {
            let index: UInt32 = try int()
            let name = try string()
            let macLength: UInt8 = try int()
            let mac = try bytes(Int(macLength))
            let mtu: UInt32 = try int()
            let up = try flag("interface up")
            let addressCount: UInt16 = try int()
            var addresses: [MediatorEnvironment.AddressPrefix] = []
            for _ in 0..<addressCount {
                addresses.append(try prefix())
            }
            e.interfaces.append(.init(index: index, name: name, mac: mac, mtu: mtu, isUp: up, addresses: addresses))
        }
        let routeCount: UInt16 = try int()
        for _ in 0..<routeCount {
            let destination = try prefix()
            let gateway: IPAddress? = try flag("has gateway") ? try address() : nil
            e.routes.append(.init(destination: destination, gateway: gateway, interfaceIndex: try int()))
        }
        return e
    }

    mutating func prefix() throws -> MediatorEnvironment.AddressPrefix {
        let a = try address()
        let p: UInt8 = try int()
        guard p <= (a.isIPv6 ? 128 : 32) else { throw WireError.invalidValue(field: "prefix length", value: String(p)) }
        return .init(address: a, prefixLength: p)
    }
}
