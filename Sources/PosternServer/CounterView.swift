import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PosternCore
import PosternTunnel
import PosternWire

/// A session's counters as the admin API shows them.
struct CounterView: Encodable {
    var name: String
    var ports: Int
    var bytesIn: UInt64
    var bytesOut: UInt64
    var framesIn: UInt64
    var framesOut: UInt64

    init(_ link: MediatorLink) {
        name = link.name
        ports = link.session.portCount
        bytesIn = link.payloadBytesIn
        bytesOut = link.payloadBytesOut
        framesIn = link.session.framesIn
        framesOut = link.session.framesOut
    }
}
