import CMNL
import CPosternShims

#if canImport(Glibc)
    import Glibc
#endif

/// A NETLINK_ROUTE socket used for one dump request. Short-lived on purpose: if a dump is
/// interrupted, the rest of it is still queued on the socket, so a retry starts on a fresh one.
final class NetlinkSocket {
    /// How long to wait for the kernel before reporting an error instead of hanging the mediator.
    /// The kernel answers route dumps immediately; this only guards against the unexpected.
    static let receiveTimeoutSeconds = 5
    /// How many times a dump invalidated by concurrent changes (NLM_F_DUMP_INTR) is retried.
    static let dumpAttempts = 3

    /// What to dump: an RTM_GET* message type with its family header.
    struct DumpRequest: Sendable {
        /// Shown in errors, e.g. "RTM_GETLINK".
        var name: String
        var messageType: UInt16
        /// Size of the family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`); its first byte is the family.
        var headerSize: Int
        var family: UInt8
        /// The message type the kernel answers with (RTM_NEW*).
        var replyType: UInt16
        /// A byte to set in the family header besides the family, as (offset, value): RTM_GETNEIGH
        /// dumps proxy entries when `ndm_flags` is NTF_PROXY.
        var extraByte: (offset: Int, value: UInt8)? = nil
    }

    private var handle: OpaquePointer?
    private let portID: UInt32

    init() throws {
        guard let handle = mnl_socket_open(NETLINK_ROUTE) else {
            throw NetlinkError.callFailed(call: "mnl_socket_open(NETLINK_ROUTE)", errno: errno)
        }
        guard mnl_socket_bind(handle, 0, pid_t(MNL_SOCKET_AUTOPID)) >= 0 else {
            let code = errno
            mnl_socket_close(handle)
            throw NetlinkError.callFailed(call: "mnl_socket_bind", errno: code)
        }
        var timeout = timeval(tv_sec: Self.receiveTimeoutSeconds, tv_usec: 0)
        if setsockopt(
            mnl_socket_get_fd(handle), SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) < 0
        {
            let code = errno
            mnl_socket_close(handle)
            throw NetlinkError.callFailed(call: "setsockopt(SO_RCVTIMEO)", errno: code)
        }
        self.handle = handle
        self.portID = mnl_socket_get_portid(handle)
    }

    /// Closes the socket; safe to call twice. Callers `defer` this right after `init`.
    func close() {
        if let handle {
            mnl_socket_close(handle)
            self.handle = nil
        }
    }

    deinit { close() }

    /// Runs `request` on fresh sockets until one dump completes without NLM_F_DUMP_INTR.
    static func dump(_ request: DumpRequest) throws -> [NetlinkMessage] {
        for _ in 1...dumpAttempts {
            let socket = try NetlinkSocket()
            defer { socket.close() }
            if let messages = try socket.dumpOnce(request) { return messages }
        }
        throw NetlinkError.dumpInterrupted(request: request.name, attempts: dumpAttempts)
    }

    /// Sends one dump request and collects the replies until NLMSG_DONE. Returns nil when the
    /// kernel flagged the dump as interrupted (the set changed while it was being walked).
    func dumpOnce(_ request: DumpRequest) throws -> [NetlinkMessage]? {
        guard let handle else {
            throw NetlinkError.callFailed(call: "\(request.name) on a closed socket", errno: EBADF)
        }
        let bufferSize = postern_mnl_socket_buffer_size()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }

        // Any sequence number works: the socket is ours alone; mnl_cb_run checks replies carry it.
        let sequence = UInt32(truncatingIfNeeded: time(nil))
        let nlh = mnl_nlmsg_put_header(buffer)!
        nlh.pointee.nlmsg_type = request.messageType
        nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        nlh.pointee.nlmsg_seq = sequence
        // The family header comes back zeroed; only its first byte (the family) matters for a dump.
        let familyHeader = mnl_nlmsg_put_extra_header(nlh, request.headerSize)!
        familyHeader.storeBytes(of: request.family, as: UInt8.self)
        if let extra = request.extraByte, extra.offset < request.headerSize {
            familyHeader.storeBytes(of: extra.value, toByteOffset: extra.offset, as: UInt8.self)
        }

        guard mnl_socket_sendto(handle, nlh, Int(nlh.pointee.nlmsg_len)) >= 0 else {
            throw NetlinkError.callFailed(call: "mnl_socket_sendto(\(request.name))", errno: errno)
        }

        let collector = Collector(replyType: request.replyType)
        let context = Unmanaged.passUnretained(collector).toOpaque()
        return try withExtendedLifetime(collector) { () throws -> [NetlinkMessage]? in
            // A dump spans several datagrams; mnl_cb_run answers MNL_CB_OK while more are due and
            // MNL_CB_STOP once it has seen NLMSG_DONE.
            var status = MNL_CB_OK
            while status > MNL_CB_STOP {
                let received = mnl_socket_recvfrom(handle, buffer, bufferSize)
                if received < 0 {
                    let code = errno
                    if code == EINTR { continue }  // a signal, not an interrupted dump
                    if code == ENOSPC {
                        // libmnl's report of MSG_TRUNC: one message did not fit the buffer.
                        throw NetlinkError.malformedReply(
                            request: request.name, detail: "a reply did not fit the \(bufferSize)-byte receive buffer")
                    }
                    throw NetlinkError.callFailed(call: "mnl_socket_recvfrom(\(request.name))", errno: code)
                }
                guard received > 0 else {
                    throw NetlinkError.malformedReply(request: request.name, detail: "empty datagram before NLMSG_DONE")
                }
                status = mnl_cb_run(buffer, Int(received), sequence, portID, Collector.callback, context)
            }
            if status < 0 {
                let code = errno
                // libmnl reports NLM_F_DUMP_INTR as EINTR: the caller retries on a new socket.
                if code == EINTR { return nil }
                // Otherwise the kernel answered NLMSG_ERROR, or a reply carried the wrong sequence
                // number or port (EPROTO/ESRCH); libmnl left the reason in errno.
                throw NetlinkError.callFailed(call: "mnl_cb_run(\(request.name))", errno: code)
            }
            return collector.messages
        }
    }

    /// Sends one change request (built with NLM_F_ACK) and waits for the kernel's answer: returns on
    /// success, throws `NetlinkError.requestFailed` with the kernel's errno otherwise.
    func acknowledged(_ request: NetlinkRequest, sequence: UInt32) throws {
        guard let handle else {
            throw NetlinkError.callFailed(call: "\(request.summary) on a closed socket", errno: EBADF)
        }
        let sent = request.bytes.withUnsafeBytes { mnl_socket_sendto(handle, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw NetlinkError.requestFailed(request.summary, errno: errno) }
        let bufferSize = postern_mnl_socket_buffer_size()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let received = mnl_socket_recvfrom(handle, buffer, bufferSize)
            if received < 0 {
                if errno == EINTR { continue }
                throw NetlinkError.requestFailed(request.summary, errno: errno)
            }
            // NLMSG_ERROR with error 0 is the ACK (MNL_CB_STOP); with an error, libmnl sets errno to it.
            let status = mnl_cb_run(buffer, Int(received), sequence, portID, nil, nil)
            if status < 0 { throw NetlinkError.requestFailed(request.summary, errno: errno) }
            if status == MNL_CB_STOP { return }
        }
    }

    /// Receives messages from libmnl's C callback through an unretained context pointer;
    /// `dumpOnce` keeps it alive while mnl_cb_run runs.
    private final class Collector {
        let replyType: UInt16
        var messages: [NetlinkMessage] = []

        init(replyType: UInt16) { self.replyType = replyType }

        static let callback: mnl_cb_t = { nlh, data in
            guard let nlh, let data else { return MNL_CB_ERROR }
            let collector = Unmanaged<Collector>.fromOpaque(data).takeUnretainedValue()
            // mnl_cb_run handles NLMSG_DONE/ERROR/NOOP itself; anything else that is not the
            // reply type we asked for is skipped rather than misread.
            if nlh.pointee.nlmsg_type == collector.replyType {
                collector.messages.append(NetlinkMessage(copying: nlh))
            }
            return MNL_CB_OK
        }
    }
}
