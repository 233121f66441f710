import NIOCore
import PosternWire
import XCTest

/// The test vectors of docs/protocol.md §8, byte for byte. The hex literals below are the same text as
/// the doc's dumps (the part before `|` is the bytes, the rest a comment); `testDocumentMatches`
/// checks the doc still says the same.
enum GoldenVectors {
    struct Vector {
        /// The doc's heading number, e.g. "8.1".
        var section: String
        var frame: Frame
        var hex: String
        var bytes: [UInt8] { [UInt8](hex: hex) }
    }

    /// The fixed handshake inputs of §8: nonces, secret and name.
    static let mediatorNonce = Array(UInt8(0x00)...UInt8(0x1f))
    static let serverNonce = Array(UInt8(0xa0)...UInt8(0xbf))
    static let secret = Array("correct horse battery staple".utf8)
    static let name = "acme"
    static let mediatorProof = [UInt8](hex: "ec5aaf2fd20270d9c2383d54181f8d7915c66b789ecfa72150d80de0422e910b")
    static let serverProof = [UInt8](hex: "73a095ebb7ecdf7428ca580bf4f28a955af527f4c3138984397bbad54c26fe3c")

    static let environment = MediatorEnvironment(
        hostname: "lanhost", softwareVersion: "0.1.0", capabilities: [.tun, .rawSockets],
        interfaces: [
            .init(
                index: 2, name: "eth0", mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56], mtu: 1500, isUp: true,
                addresses: [
                    .init(address: ipv4("192.168.77.2"), prefixLength: 24),
                    .init(address: ipv6("fd00::2"), prefixLength: 64),
                ])
        ],
        routes: [.init(destination: .init(address: .anyV4, prefixLength: 0), gateway: ipv4("192.168.77.1"), interfaceIndex: 2)])

    static let all: [Vector] = [
        Vector(
            section: "8.1",
            frame: .hello(.init(name: name, softwareVersion: "0.1.0", nonce: mediatorNonce, initialWindow: 4 << 20, maxPayload: 1_049_600)),
            hex: """
                00 00 00 3b 01 00                               | header: length 59, type 0x01 HELLO, flags 0
                50 53 54 4e                                     | magic "PSTN"
                00 01                                           | version 1
                00 04 61 63 6d 65                               | name: length 4, "acme"
                00 05 30 2e 31 2e 30                            | software version: length 5, "0.1.0"
                00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f | mediator nonce 00 01 .. 1f
                10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f |
                00 40 00 00                                     | initial window 4194304
                00 10 04 00                                     | max payload 1049600
                """),
        Vector(
            section: "8.2", frame: .challenge(.init(nonce: serverNonce)),
            hex: """
                00 00 00 22 02 00                               | header: length 34, type 0x02 CHALLENGE, flags 0
                00 01                                           | version 1
                a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af | server nonce a0 a1 .. bf
                b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf |
                """),
        Vector(
            section: "8.3", frame: .authenticate(.init(proof: mediatorProof)),
            hex: """
                00 00 00 20 03 00                               | header: length 32, type 0x03 AUTHENTICATE, flags 0
                ec 5a af 2f d2 02 70 d9 c2 38 3d 54 18 1f 8d 79 | mediator proof (§4.2)
                15 c6 6b 78 9e cf a7 21 50 d8 0d e0 42 2e 91 0b |
                """),
        Vector(
            section: "8.4",
            frame: .welcome(
                .init(
                    sessionID: 0x0123_4567_89ab_cdef, proof: serverProof, keepaliveIntervalMillis: 10_000, deadTimeoutMillis: 30_000,
                    initialWindow: 4 << 20, maxPayload: 1_049_600)),
            hex: """
                00 00 00 38 04 00                               | header: length 56, type 0x04 WELCOME, flags 0
                01 23 45 67 89 ab cd ef                         | session id 0x0123456789abcdef
                73 a0 95 eb b7 ec df 74 28 ca 58 0b f4 f2 8a 95 | server proof (§4.2)
                5a f5 27 f4 c3 13 89 84 39 7b ba d5 4c 26 fe 3c |
                00 00 27 10                                     | keepalive interval 10000 ms
                00 00 75 30                                     | dead timeout 30000 ms
                00 40 00 00                                     | initial window 4194304
                00 10 04 00                                     | max payload 1049600
                """),
        Vector(
            section: "8.5", frame: .refused(.init(code: .authenticationFailed, message: "wrong secret")),
            hex: """
                00 00 00 10 05 00                               | header: length 16, type 0x05 REFUSED, flags 0
                00 0e                                           | code 14 authentication failed
                00 0c 77 72 6f 6e 67 20 73 65 63 72 65 74       | message: length 12, "wrong secret"
                """),
        Vector(
            section: "8.6", frame: .environment(environment),
            hex: """
                00 00 00 58 06 00                               | header: length 88, type 0x06 ENVIRONMENT, flags 0
                00 07 6c 61 6e 68 6f 73 74                      | hostname: length 7, "lanhost"
                00 05 30 2e 31 2e 30                            | software version: length 5, "0.1.0"
                00 00 00 03                                     | capabilities 0x3: tun | raw sockets
                00 01                                           | 1 interface
                00 00 00 02                                     |   index 2
                00 04 65 74 68 30                               |   name: length 4, "eth0"
                06 52 54 00 12 34 56                            |   MAC: length 6, 52:54:00:12:34:56
                00 00 05 dc                                     |   MTU 1500
                01                                              |   up
                00 02                                           |   2 addresses
                01 c0 a8 4d 02                                  |     IPv4 192.168.77.2
                18                                              |     /24
                04                                              |     address type 4: IPv6
                fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 |     fd00::2
                40                                              |     /64
                00 01                                           | 1 route
                01 00 00 00 00                                  |   destination IPv4 0.0.0.0
                00                                              |   /0
                01                                              |   has gateway
                01 c0 a8 4d 01                                  |   gateway IPv4 192.168.77.1
                00 00 00 02                                     |   interface index 2
                """),
        Vector(
            section: "8.7", frame: .ping(.init(token: 1)),
            hex: """
                00 00 00 08 07 00                               | header: length 8, type 0x07 PING, flags 0
                00 00 00 00 00 00 00 01                         | token 1
                """),
        Vector(
            section: "8.8", frame: .pong(.init(token: 1)),
            hex: """
                00 00 00 08 08 00                               | header: length 8, type 0x08 PONG, flags 0
                00 00 00 00 00 00 00 01                         | token 1
                """),
        Vector(
            section: "8.9", frame: .goAway(.init(code: .shuttingDown, message: "server stopping")),
            hex: """
                00 00 00 13 09 00                               | header: length 19, type 0x09 GOAWAY, flags 0
                00 11                                           | code 17 shutting down
                00 0f                                           | message: length 15
                73 65 72 76 65 72 20 73 74 6f 70 70 69 6e 67    |   "server stopping"
                """),
        Vector(
            section: "8.10", frame: .open(.init(requestID: 1, transport: .tcp, exact: false, address: .anyV4, port: 8000)),
            hex: """
                00 00 00 0d 10 00                               | header: length 13, type 0x10 OPEN, flags 0
                00 00 00 01                                     | request id 1
                06                                              | transport 6 TCP
                00                                              | exact 0: first free from the port up
                01 00 00 00 00                                  | address: type 1 IPv4, 0.0.0.0
                1f 40                                           | port 8000
                """),
        Vector(
            section: "8.11", frame: .redirect(.init(requestID: 2, exact: true, address: .anyV4, port: 5000)),
            hex: """
                00 00 00 0c 11 00                               | header: length 12, type 0x11 REDIRECT, flags 0
                00 00 00 02                                     | request id 2
                01                                              | exact 1
                01 00 00 00 00                                  | address: type 1 IPv4, 0.0.0.0
                13 88                                           | port 5000
                """),
        Vector(
            section: "8.12", frame: .connect(.init(requestID: 3, portID: 0, destination: endpoint("192.168.77.10:80"))),
            hex: """
                00 00 00 0f 12 00                               | header: length 15, type 0x12 CONNECT, flags 0
                00 00 00 03                                     | request id 3
                00 00 00 00                                     | port id 0: open an ephemeral port first
                01 c0 a8 4d 0a                                  | destination: type 1 IPv4, 192.168.77.10
                00 50                                           | port 80
                """),
        Vector(
            section: "8.13", frame: .connect(.init(requestID: 4, portID: 0, destination: Endpoint(host: .name("intranet.lan"), port: 443))),
            hex: """
                00 00 00 18 12 00                               | header: length 24, type 0x12 CONNECT, flags 0
                00 00 00 04                                     | request id 4
                00 00 00 00                                     | port id 0
                03 0c                                           | destination: type 3 name, length 12
                69 6e 74 72 61 6e 65 74 2e 6c 61 6e             |   "intranet.lan"
                01 bb                                           | port 443
                """),
        Vector(
            section: "8.14", frame: .connect(.init(requestID: 5, portID: 0, destination: endpoint("[fd00::10]:80"))),
            hex: """
                00 00 00 1b 12 00                               | header: length 27, type 0x12 CONNECT, flags 0
                00 00 00 05                                     | request id 5
                00 00 00 00                                     | port id 0
                04                                              | destination: address type 4, IPv6
                fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 |   fd00::10
                00 50                                           | port 80
                """),
        Vector(
            section: "8.15", frame: .listen(.init(requestID: 6, portID: 1, backlog: 128)),
            hex: """
                00 00 00 0a 13 00                               | header: length 10, type 0x13 LISTEN, flags 0
                00 00 00 06                                     | request id 6
                00 00 00 01                                     | port id 1
                00 80                                           | backlog 128
                """),
        Vector(
            section: "8.16", frame: .close(.init(requestID: 7, portID: 1)),
            hex: """
                00 00 00 08 14 00                               | header: length 8, type 0x14 CLOSE, flags 0
                00 00 00 07                                     | request id 7
                00 00 00 01                                     | port id 1
                """),
        Vector(
            section: "8.17", frame: .done(.init(requestID: 1, portID: 1, local: endpoint("0.0.0.0:8000"))),
            hex: """
                00 00 00 0f 18 00                               | header: length 15, type 0x18 DONE, flags 0
                00 00 00 01                                     | request id 1
                00 00 00 01                                     | port id 1
                01 00 00 00 00                                  | local IPv4 0.0.0.0
                1f 40                                           | port 8000
                """),
        Vector(
            section: "8.18", frame: .failed(.init(requestID: 3, code: .refused, errno: 111, message: "Connection refused")),
            hex: """
                00 00 00 1e 19 00                               | header: length 30, type 0x19 FAILED, flags 0
                00 00 00 03                                     | request id 3
                00 01                                           | code 1 refused
                00 00 00 6f                                     | errno 111 (ECONNREFUSED)
                00 12                                           | message: length 18
                43 6f 6e 6e 65 63 74 69 6f 6e 20 72 65 66 75 73 |   "Connection refused"
                65 64                                           |
                """),
        Vector(
            section: "8.19", frame: .data(.init(portID: 2, bytes: buffer("hello"))),
            hex: """
                00 00 00 09 20 00                               | header: length 9, type 0x20 DATA, flags 0
                00 00 00 02                                     | port id 2
                68 65 6c 6c 6f                                  | data "hello"
                """),
        Vector(
            section: "8.20",
            frame: .datagram(.init(portID: 3, peer: endpoint("192.168.77.53:53"), bytes: buffer([0xde, 0xad, 0xbe, 0xef]))),
            hex: """
                00 00 00 0f 21 00                               | header: length 15, type 0x21 DATAGRAM, flags 0
                00 00 00 03                                     | port id 3
                01 c0 a8 4d 35                                  | peer IPv4 192.168.77.53
                00 35                                           | port 53
                de ad be ef                                     | data de ad be ef
                """),
        Vector(
            section: "8.21", frame: .window(.init(portID: 2, increment: 65536)),
            hex: """
                00 00 00 08 22 00                               | header: length 8, type 0x22 WINDOW, flags 0
                00 00 00 02                                     | port id 2
                00 01 00 00                                     | increment 65536
                """),
        Vector(
            section: "8.22", frame: .accepted(.init(listenerID: 1, portID: 4, peer: endpoint("192.168.77.20:51000"))),
            hex: """
                00 00 00 0f 23 00                               | header: length 15, type 0x23 ACCEPTED, flags 0
                00 00 00 01                                     | listener port id 1
                00 00 00 04                                     | new port id 4
                01 c0 a8 4d 14                                  | peer IPv4 192.168.77.20
                c7 38                                           | port 51000
                """),
        Vector(
            section: "8.23", frame: .finished(.init(portID: 2)),
            hex: """
                00 00 00 04 24 00                               | header: length 4, type 0x24 FINISHED, flags 0
                00 00 00 02                                     | port id 2
                """),
        Vector(
            section: "8.24", frame: .reset(.init(portID: 4, code: .connectionReset)),
            hex: """
                00 00 00 06 25 00                               | header: length 6, type 0x25 RESET, flags 0
                00 00 00 04                                     | port id 4
                00 0c                                           | code 12 connection reset
                """),
        Vector(
            section: "8.25", frame: .tun(.init(requestID: 9, mtu: 1400)),
            hex: """
                00 00 00 06 15 00                               | header: length 6, type 0x15 TUN, flags 0
                00 00 00 09                                     | request id 9
                05 78                                           | mtu 1400
                """),
        Vector(
            section: "8.26",
            frame: .tunReady(
                .init(
                    requestID: 9, mtu: 1400, address: .init(address: IPAddress("192.168.77.50")!, prefixLength: 24),
                    prefixes: [
                        .init(address: IPAddress("192.168.77.0")!, prefixLength: 24),
                        .init(address: IPAddress("10.77.0.0")!, prefixLength: 16),
                    ])),
            hex: """
                00 00 00 1a 1a 00                               | header: length 26, type 0x1a TUN_READY, flags 0
                00 00 00 09                                     | request id 9
                05 78                                           | mtu 1400
                01 c0 a8 4d 32 18                               | address 192.168.77.50/24
                00 02                                           | 2 prefixes
                01 c0 a8 4d 00 18                               | 192.168.77.0/24
                01 0a 4d 00 00 10                               | 10.77.0.0/16
                """),
        Vector(
            section: "8.27",
            frame: .packet(
                .init(
                    bytes: buffer([
                        0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x4d, 0x0a, 0xc0, 0xa8,
                        0x4d, 0x35,
                    ]))),
            hex: """
                00 00 00 14 26 00                               | header: length 20, type 0x26 PACKET, flags 0
                45 00 00 14 00 00 40 00 40 11 00 00             | an IPv4 header (opaque to the frame)
                c0 a8 4d 0a c0 a8 4d 35                         |
                """),
        Vector(
            section: "8.28",
            frame: .echo(
                .init(requestID: 10, destination: IPAddress("192.168.77.10")!, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)),
            hex: """
                00 00 00 12 17 00                               | header: length 18, type 0x17 ECHO, flags 0
                00 00 00 0a                                     | request id 10
                01 c0 a8 4d 0a                                  | destination 192.168.77.10
                40                                              | ttl 64
                00 01                                           | sequence 1
                00 38                                           | size 56
                00 00 07 d0                                     | timeout 2000 ms
                """),
        Vector(
            section: "8.34",
            frame: .echo(
                .init(requestID: 12, host: .name("lanhost"), family: .ipv6, ttl: 64, sequence: 1, size: 56, timeoutMillis: 2000)),
            hex: """
                00 00 00 17 17 00                               | header: length 23, type 0x17 ECHO, flags 0
                00 00 00 0c                                     | request id 12
                03 07 6c 61 6e 68 6f 73 74                      | destination: name, length 7, "lanhost"
                40                                              | ttl 64
                00 01                                           | sequence 1
                00 38                                           | size 56
                00 00 07 d0                                     | timeout 2000 ms
                06                                              | family 6: IPv6 addresses only
                """),
        Vector(
            section: "8.29",
            frame: .echoReply(
                .init(
                    requestID: 10, outcome: .reply, icmpType: 0, icmpCode: 0, from: IPAddress("192.168.77.10")!, ttl: 64, size: 56,
                    rttMicros: 520)),
            hex: """
                00 00 00 13 1f 00                               | header: length 19, type 0x1f ECHO_REPLY, flags 0
                00 00 00 0a                                     | request id 10
                00                                              | outcome 0 reply
                00 00                                           | icmp type 0 (echo reply), code 0
                01 c0 a8 4d 0a                                  | from 192.168.77.10
                40                                              | ttl 64
                00 38                                           | size 56
                00 00 02 08                                     | rtt 520 µs
                """),
        Vector(
            section: "8.30", frame: .tun(.init(requestID: 11, mtu: 1400, flags: [.ipv6, .stats])),
            hex: """
                00 00 00 07 15 00                               | header: length 7, type 0x15 TUN, flags 0
                00 00 00 0b                                     | request id 11
                05 78                                           | mtu 1400
                03                                              | TUN flags: ipv6 | stats
                """),
        Vector(
            section: "8.31",
            frame: .tunReady(
                .init(
                    requestID: 11, mtu: 1400, address: .init(address: IPAddress("192.168.77.50")!, prefixLength: 24),
                    prefixes: [
                        .init(address: IPAddress("192.168.77.0")!, prefixLength: 24),
                        .init(address: IPAddress("fd00:77::")!, prefixLength: 64),
                    ], secondAddress: .init(address: IPAddress("fd00:77::50")!, prefixLength: 64))),
            hex: """
                00 00 00 38 1a 00                               | header: length 56, type 0x1a TUN_READY, flags 0
                00 00 00 0b                                     | request id 11
                05 78                                           | mtu 1400
                01 c0 a8 4d 32 18                               | address 192.168.77.50/24
                00 02                                           | 2 prefixes
                01 c0 a8 4d 00 18                               | 192.168.77.0/24
                04 fd 00 00 77 00 00 00 00                      | fd00:77::/64
                00 00 00 00 00 00 00 00 40                      |
                04 fd 00 00 77 00 00 00 00                      | second address fd00:77::50/64
                00 00 00 00 00 00 00 50 40                      |
                """),
        Vector(
            section: "8.32",
            frame: .tunStats(.init(toLAN: 12, fromLAN: 10, errorsSent: 1, dropped: [("destination", 3), ("tooLarge", 1)])),
            hex: """
                00 00 00 40 29 00                               | header: length 64, type 0x29 TUN_STATS, flags 0
                00 00 00 00 00 00 00 0c                         | to LAN 12
                00 00 00 00 00 00 00 0a                         | from LAN 10
                00 00 00 00 00 00 00 01                         | errors sent 1
                02                                              | 2 reasons
                00 0b 64 65 73 74 69 6e 61 74 69 6f 6e          | "destination"
                00 00 00 00 00 00 00 03                         | 3
                00 08 74 6f 6f 4c 61 72 67 65                   | "tooLarge"
                00 00 00 00 00 00 00 01                         | 1
                """),
        Vector(
            section: "8.33", frame: .tunClose(.init(requestID: 11, message: "overlap")),
            hex: """
                00 00 00 0d 2a 00                               | header: length 13, type 0x2a TUN_CLOSE, flags 0
                00 00 00 0b                                     | request id 11
                00 07 6f 76 65 72 6c 61 70                      | message "overlap"
                """),
        Vector(
            section: "8.35",
            frame: .tunStats(
                .init(
                    toLAN: 12, fromLAN: 10, errorsSent: 0, dropped: [],
                    device: .init(asked: true, offloads: 0x67, superPacketsRead: 5, coalescedWrites: 3, offloadRefused: 0))),
            hex: """
                00 00 00 36 29 00                               | header: length 54, type 0x29 TUN_STATS, flags 0
                00 00 00 00 00 00 00 0c                         | to LAN 12
                00 00 00 00 00 00 00 0a                         | from LAN 10
                00 00 00 00 00 00 00 00                         | errors sent 0
                00                                              | 0 reasons
                01                                              | offloads asked
                00 00 00 67                                     | granted: csum tso4 tso6 uso4 uso6
                00 00 00 00 00 00 00 05                         | super-packets read 5
                00 00 00 00 00 00 00 03                         | merged writes 3
                00 00 00 00 00 00 00 00                         | reads refused 0
                """),
        Vector(
            section: "8.36",
            frame: .environment(
                .init(hostname: "", softwareVersion: "0.1.0", capabilities: [.pipelinedConnect], interfaces: [], routes: [])),
            hex: """
                00 00 00 11 06 00                               | header: length 17, type 0x06 ENVIRONMENT, flags 0
                00 00                                           | hostname: length 0
                00 05 30 2e 31 2e 30                            | software version: length 5, "0.1.0"
                00 00 01 00                                     | capabilities 0x100: pipelined connect
                00 00                                           | 0 interfaces
                00 00                                           | 0 routes
                """),
        Vector(
            section: "8.37",
            frame: .connect(.init(requestID: 12, portID: 0x8000_0001, destination: endpoint("192.168.77.10:80"))),
            hex: """
                00 00 00 0f 12 00                               | header: length 15, type 0x12 CONNECT, flags 0
                00 00 00 0c                                     | request id 12
                80 00 00 01                                     | port id 0x80000001: a new port the server names
                01 c0 a8 4d 0a                                  | destination: type 1 IPv4, 192.168.77.10
                00 50                                           | port 80
                """),
        Vector(
            section: "8.38", frame: .data(.init(portID: 0x8000_0001, bytes: buffer("GET /"))),
            hex: """
                00 00 00 09 20 00                               | header: length 9, type 0x20 DATA, flags 0
                80 00 00 01                                     | port id 0x80000001, before DONE
                47 45 54 20 2f                                  | data "GET /"
                """),
        Vector(
            section: "8.39",
            frame: .open(.init(requestID: 13, transport: .udp, exact: false, address: .anyV4, port: 0, flags: .reportDenied)),
            hex: """
                00 00 00 0e 10 00                               | header: length 14, type 0x10 OPEN, flags 0
                00 00 00 0d                                     | request id 13
                11                                              | transport 17 UDP
                00                                              | exact 0
                01 00 00 00 00                                  | address: type 1 IPv4, 0.0.0.0
                00 00                                           | port 0: the kernel chooses
                01                                              | OPEN flags: bit 0 report denied datagrams
                """),
        Vector(
            section: "8.40", frame: .denied(.init(portID: 3, count: 250)),
            hex: """
                00 00 00 08 2b 00                               | header: length 8, type 0x2b DENIED, flags 0
                00 00 00 03                                     | port id 3
                00 00 00 fa                                     | count 250
                """),
    ]
}
