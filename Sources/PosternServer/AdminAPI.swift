import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PosternCore
import PosternSOCKS
import PosternTunnel
import PosternWire

/// The admin HTTP API (JSON), for `postern ctl` and scripts. Routes:
///
///     GET  /v1/mediators                 connected mediators with their environment
///     GET  /v1/mediators/NAME/ports      the ports the server knows on that mediator
///     POST /v1/mediators/NAME/open       {"transport":"tcp|udp","address":"0.0.0.0","port":0,"exact":false}
///     POST /v1/mediators/NAME/redirect   {"address":"0.0.0.0","port":5000,"exact":true,"destination":"HOST:PORT"}
///                                        (destination optional: relay the LAN senders there)
///     POST /v1/mediators/NAME/connect    {"port":ID,"destination":"HOST:PORT"}   (port 0: open+connect)
///     POST /v1/mediators/NAME/listen     {"port":ID,"backlog":128}
///     POST /v1/mediators/NAME/close      {"port":ID}
///     GET  /v1/events                    a stream of JSON lines; ?history=1 replays recent ones first
///     GET  /v1/counters                  totals per mediator
///     GET  /v1/status                    version, uptime, every mediator and forward with state and counters
///     GET  /v1/forwards                  the forwards with state and counters (as in /v1/status)
///     POST /v1/forwards/add              {"spec":"tcp:0.0.0.0:8080=acme/192.168.77.10:80"}: start one (kept across reloads)
///     POST /v1/forwards/remove           {"spec":"…"}: stop one, configured or added
///                                        (a spec `socks:ADDR:PORT=NAME` adds or removes a SOCKS5 listener)
///     POST /v1/reload                    read the configuration again and apply its forwards and SOCKS5 listeners (`ServerService.reload`)
///     GET  /v1/captures                  the captures of single forwards (`ForwardCaptures`), running and kept
///     POST /v1/captures/start            {"forward":"SPEC or LISTEN ADDRESS","maxBytes":8388608}: record one forward
///     POST /v1/captures/stop             {"id":1}
///     GET  /v1/captures/ID/pcap          the capture's pcap file
///     GET  /metrics                      the same in the Prometheus text format (`ServerMetrics`)
///     GET  /, /dashboard                 the web page showing the above (`Dashboard`), and its
///          /dashboard.js, /dashboard.css  script and style: these hold no data and need no token
///
/// Every request needs a `Host` the API is really reached by, and all but those files the bearer token; a POST needs
/// `Content-Type: application/json` (`AdminAccess`). A refused or oversized request is answered
/// once and the connection closed, and nothing more is read from it.
final class AdminAPI: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests, or reading one that passed the access check.
        case ready
        case refused
        case streaming
    }

    private let registry: MediatorRegistry
    private let access: AdminAccess
    private let limits: AdminLimits
    private let logger: Logger
    /// The server's status now and its metrics (nil in tests that only drive the mediator routes).
    private let status: (() -> ServerStatus)?
    /// The same, gathered from the loops the sessions run on (`ServerService.statusLater`).
    private let statusLater: (() -> EventLoopFuture<ServerStatus>)?
    private let metrics: ServerMetrics?
    private let reload: (() -> EventLoopFuture<ReloadResult>)?
    /// Adds ("add") or removes ("remove") one forward.
    private let changeForward: ((String, ForwardSpec) -> EventLoopFuture<ReloadResult>)?
    /// Adds ("add") or removes ("remove") one SOCKS5 listener (`{"spec":"socks:ADDR:PORT=NAME"}`).
    private let changeSOCKS: ((String, SOCKSListenerSpec) -> EventLoopFuture<ReloadResult>)?
    /// `ctl capture` (nil: the routes answer 404).
    private let captures: ForwardCaptures?
    private let findForward: ((String) -> (any Forward)?)?
    private var state = State.ready
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var subscription: UInt64?
    private var keepAlive = true
    /// Closes a connection that has not delivered a whole request in time (`AdminLimits.idleTimeout`).
    private var idleTimer: Scheduled<Void>?
    /// Event-stream bytes handed to the channel and not yet written to the socket.
    private var eventBacklog = 0

    init(
        registry: MediatorRegistry, access: AdminAccess, limits: AdminLimits, logger: Logger, status: (() -> ServerStatus)? = nil,
        metrics: ServerMetrics? = nil, reload: (() -> EventLoopFuture<ReloadResult>)? = nil,
        changeForward: ((String, ForwardSpec) -> EventLoopFuture<ReloadResult>)? = nil, captures: ForwardCaptures? = nil,
        findForward: ((String) -> (any Forward)?)? = nil,
        changeSOCKS: ((String, SOCKSListenerSpec) -> EventLoopFuture<ReloadResult>)? = nil,
        statusLater: (() -> EventLoopFuture<ServerStatus>)? = nil
    ) {
        self.statusLater = statusLater
        self.changeSOCKS = changeSOCKS
        self.captures = captures
        self.findForward = findForward
        self.changeForward = changeForward
        self.reload = reload
        self.status = status
        self.metrics = metrics
        self.registry = registry
        self.access = access
        self.limits = limits
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armIdleTimer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armIdleTimer(context)
        context.fireChannelActive()
    }

    private func armIdleTimer(_ context: ChannelHandlerContext) {
        guard idleTimer == nil, state == .ready else { return }
        idleTimer = context.eventLoop.scheduleTask(in: limits.idleTimeout) { [weak self] in
            guard let self else { return }
            self.idleTimer = nil
            self.logger.debug(
                "admin connection from \(context.channel.remoteAddress?.display ?? "?") closed: no request within the idle timeout")
            context.close(promise: nil)
        }
    }

    private func cancelIdleTimer() {
        idleTimer?.cancel()
        idleTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .ready else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            keepAlive = h.isKeepAlive
            if let refusal = access.check(method: h.method, uri: h.uri, headers: h.headers) {
                return refuse(context, refusal)
            }
            if let length = h.headers.first(name: "Content-Length").flatMap(Int.init), length > limits.maxBody {
                return tooLarge(context)
            }
            head = h
            body = context.channel.allocator.buffer(capacity: 0)
        case .body(var b):
            guard head != nil else { return }
            if (body?.readableBytes ?? 0) + b.readableBytes > limits.maxBody { return tooLarge(context) }
            body?.writeBuffer(&b)
        case .end:
            guard let h = head else { return }
            head = nil
            cancelIdleTimer()
            route(context, h, body ?? ByteBuffer())
            body = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelIdleTimer()
        if let s = subscription { registry.events.unsubscribe(s) }
        subscription = nil
        context.fireChannelInactive()
    }

    /// One answer, then the connection closes and the rest of the request is ignored.
    private func refuse(_ context: ChannelHandlerContext, _ refusal: AdminAccess.Refusal) {
        state = .refused
        head = nil
        body = nil
        keepAlive = false
        switch refusal {
        case .foreignHost:
            respond(context, .forbidden, ["error": "the Host header does not name this admin API (use 127.0.0.1:PORT or localhost:PORT)"])
        case .unauthorized:
            respond(
                context, .unauthorized,
                [
                    "error":
                        "a valid bearer token is required (ctl reads it from STATE_DIR/admin.token, $POSTERN_ADMIN_TOKEN or --token-file)"
                ])
        case .unsupportedMediaType:
            respond(context, .unsupportedMediaType, ["error": "a request body must be Content-Type: application/json"])
        }
    }

    private func tooLarge(_ context: ChannelHandlerContext) {
        state = .refused
        head = nil
        body = nil
        keepAlive = false
        respond(context, .payloadTooLarge, ["error": "request body too large (limit \(limits.maxBody) bytes)"])
    }

    // MARK: - Routing

    private func route(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ body: ByteBuffer) {
        let (path, query) = Self.split(head.uri)
        let parts = path.split(separator: "/").map(String.init)
        if head.method == .GET, let asset = Dashboard.asset(path) { return respondAsset(context, asset) }
        switch (head.method, parts.count) {
        case (.GET, 2) where parts == ["v1", "mediators"]:
            onLinks(context, registry.openLinks.sorted { $0.name < $1.name }, MediatorView.init) { [self] in
                respond(context, .ok, $0.map(withUnrouted))
            }
        case (.GET, 3) where parts[0...1] == ["v1", "mediators"]:
            guard let link = link(context, parts[2]) else { return }
            onLinks(context, [link], MediatorView.init) { [self] in respond(context, .ok, withUnrouted($0[0])) }
        case (.GET, 4) where parts[0...1] == ["v1", "mediators"] && parts[3] == "ports":
            guard let link = link(context, parts[2]) else { return }
            let ports: (MediatorLink) -> [MediatorLink.PortRecord] = { $0.ports.values.sorted { $0.id < $1.id } }
            onLinks(context, [link], ports) { [self] in respond(context, .ok, $0[0]) }
        case (.POST, 4) where parts[0...1] == ["v1", "mediators"]:
            guard let link = link(context, parts[2]) else { return }
            operation(context, link, parts[3], body)
        case (.GET, 2) where parts == ["v1", "events"]:
            stream(context, history: query.contains("history=1"))
        case (.GET, 2) where parts == ["v1", "counters"]:
            onLinks(context, registry.openLinks, CounterView.init) { [self] in respond(context, .ok, $0) }
        case (.GET, 2) where parts == ["v1", "status"] && (status != nil || statusLater != nil):
            currentStatus(context) { [self] in respond(context, .ok, $0) }
        case (.GET, 2) where parts == ["v1", "forwards"] && (status != nil || statusLater != nil):
            currentStatus(context) { [self] in respond(context, .ok, $0.forwards) }
        case (.POST, 3) where parts[0...1] == ["v1", "forwards"] && ["add", "remove"].contains(parts[2]) && changeForward != nil:
            struct Body: Decodable { var spec: String }
            guard let body = try? JSONDecoder().decode(Body.self, from: Data(body.readableBytesView)) else {
                return respond(context, .badRequest, ["error": "body must be {\"spec\": \"FORWARD\"}"])
            }
            let change: EventLoopFuture<ReloadResult>
            if body.spec.hasPrefix("socks:") {
                guard let changeSOCKS else {
                    return respond(context, .notFound, ["error": "this server has no SOCKS5 listeners to change"])
                }
                let spec: SOCKSListenerSpec
                do {
                    spec = try SOCKSListenerSpec(parsing: String(body.spec.dropFirst("socks:".count)))
                } catch {
                    return respond(context, .badRequest, ["error": "\(error)"])
                }
                change = changeSOCKS(parts[2], spec)
            } else {
                let spec: ForwardSpec
                do { spec = try ForwardSpec(parsing: body.spec) } catch { return respond(context, .badRequest, ["error": "\(error)"]) }
                change = changeForward!(parts[2], spec)
            }
            change.whenComplete { [self] result in
                switch result {
                case .success(let done): respond(context, .ok, done)
                case .failure(let error): respond(context, .unprocessableEntity, ["error": "\(parts[2]) refused: \(error)"])
                }
            }
        case (.POST, 2) where parts == ["v1", "reload"] && reload != nil:
            reload!().whenComplete { [self] result in
                switch result {
                case .success(let done): respond(context, .ok, done)
                case .failure(let error): respond(context, .unprocessableEntity, ["error": "reload refused: \(error)"])
                }
            }
        case (_, 2...4) where parts[0...1] == ["v1", "captures"] && captures != nil:
            capture(context, head.method, Array(parts.dropFirst(2)), body)
        case (.GET, 1) where parts == ["metrics"] && (status != nil || statusLater != nil) && metrics != nil:
            currentStatus(context) { [self] in respondText(context, metrics!.text($0)) }
        default:
            respond(context, .notFound, ["error": "no such endpoint: \(head.method) \(path)"])
        }
    }

    /// `ctl capture`: list, start, stop, download.
    private func capture(_ context: ChannelHandlerContext, _ method: HTTPMethod, _ rest: [String], _ body: ByteBuffer) {
        guard let captures else { return }
        struct Request: Decodable {
            var forward: String?
            var maxBytes: Int?
            var id: Int?
        }
        func answer(_ result: () throws(ForwardCaptures.Failure) -> ForwardCaptures.View) {
            do throws(ForwardCaptures.Failure) {
                respond(context, .ok, try result())
            } catch {
                let status: HTTPResponseStatus
                switch error.kind {
                case .unknown: status = .notFound
                case .conflict: status = .conflict
                case .invalid: status = .badRequest
                case .io: status = .internalServerError
                }
                respond(context, status, ["error": error.description])
            }
        }
        switch (method, rest.count) {
        case (.GET, 0):
            respond(context, .ok, captures.views)
        case (.POST, 1) where rest[0] == "start" || rest[0] == "stop":
            guard let request = try? JSONDecoder().decode(Request.self, from: Data(body.readableBytesView)) else {
                return respond(context, .badRequest, ["error": "body must be {\"forward\": \"FORWARD\", \"maxBytes\": N} or {\"id\": N}"])
            }
            if rest[0] == "stop" {
                guard let id = request.id else { return respond(context, .badRequest, ["error": "stop needs {\"id\": N}"]) }
                return answer { () throws(ForwardCaptures.Failure) in try captures.stop(id: id) }
            }
            guard let name = request.forward else {
                return respond(context, .badRequest, ["error": "start needs {\"forward\": \"FORWARD\"}"])
            }
            guard let forward = findForward?(name) else {
                return respond(context, .notFound, ["error": "no forward '\(name)' (ctl forwards lists them)"])
            }
            answer { () throws(ForwardCaptures.Failure) in try captures.start(forward, maxBytes: request.maxBytes) }
        case (.GET, 2) where rest[1] == "pcap":
            guard let id = Int(rest[0]), let path = captures.recorder(id: id)?.path else {
                return respond(context, .notFound, ["error": "no capture '\(rest[0])'"])
            }
            // At most `largestMaxBytes`: the recorder stops there.
            guard let data = FileManager.default.contents(atPath: path) else {
                return respond(context, .internalServerError, ["error": "cannot read capture \(id)"])
            }
            respondBytes(context, data, type: "application/vnd.tcpdump.pcap")
        default:
            respond(context, .notFound, ["error": "no such endpoint: \(method) /v1/captures/\(rest.joined(separator: "/"))"])
        }
    }

    /// The server-wide count of datagrams that named no session, read here on the control loop.
    private func withUnrouted(_ view: MediatorView) -> MediatorView {
        var view = view
        view.datagrams.unrouted = registry.unroutedDatagrams()
        return view
    }

    /// `make` of each link, run on the link's loop (`--threads`), then `then` with all of them here.
    private func onLinks<T>(
        _ context: ChannelHandlerContext, _ links: [MediatorLink], _ make: @escaping (MediatorLink) -> T,
        then: @escaping ([T]) -> Void
    ) {
        let views = links.map { link in
            link.eventLoop.inEventLoop ? link.eventLoop.makeSucceededFuture(make(link)) : link.eventLoop.submit { make(link) }
        }
        EventLoopFuture.whenAllSucceed(views, on: context.eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let all): then(all)
            case .failure(let error): respond(context, .internalServerError, ["error": "\(error)"])
            }
        }
    }

    private func currentStatus(_ context: ChannelHandlerContext, then: @escaping (ServerStatus) -> Void) {
        guard let statusLater else { return then(status!()) }
        statusLater().hop(to: context.eventLoop).whenComplete { [self] result in
            switch result {
            case .success(let s): then(s)
            case .failure(let error): respond(context, .internalServerError, ["error": "\(error)"])
            }
        }
    }

    private func link(_ context: ChannelHandlerContext, _ name: String) -> MediatorLink? {
        guard let l = registry.link(name) else {
            respond(context, .notFound, ["error": "mediator '\(name)' is not connected"])
            return nil
        }
        return l
    }

    struct OperationRequest: Decodable {
        var transport: String?
        var address: String?
        var port: UInt32?
        var exact: Bool?
        var destination: String?
        var backlog: UInt16?
        // echo (ICMP echo from the mediator, docs/protocol.md §11)
        var ttl: UInt8?
        var sequence: UInt16?
        var size: UInt16?
        var timeoutMillis: UInt32?
        /// echo to a name: 4 or 6 restricts what it may resolve to (the mediator resolves it).
        var family: UInt8?
    }

    struct OperationResult: Encodable {
        var port: UInt32
        var local: String
    }

    private func operation(_ context: ChannelHandlerContext, _ link: MediatorLink, _ op: String, _ body: ByteBuffer) {
        let request: OperationRequest
        do {
            request = try JSONDecoder().decode(OperationRequest.self, from: Data(body.readableBytesView))
        } catch {
            return respond(context, .badRequest, ["error": "body is not the expected JSON: \(error)"])
        }
        if op == "echo" { return echo(context, link, request) }
        var future: EventLoopFuture<Frame.Done>
        let events = registry.events
        // The operation runs on the link's loop (`--threads`); its answer comes back here.
        func onLink(_ make: @escaping () -> EventLoopFuture<Frame.Done>) -> EventLoopFuture<Frame.Done> {
            link.eventLoop.inEventLoop ? make() : link.eventLoop.flatSubmit(make)
        }
        switch op {
        case "open":
            let transport: Frame.Transport
            switch request.transport ?? "tcp" {
            case "tcp": transport = .tcp
            case "udp": transport = .udp
            default: return respond(context, .badRequest, ["error": "transport must be tcp or udp"])
            }
            guard let address = IPAddress(request.address ?? "0.0.0.0") else {
                return respond(context, .badRequest, ["error": "address is not an IP address"])
            }
            guard let port = request.port, port <= UInt32(UInt16.max) else {
                return respond(context, .badRequest, ["error": "port (0-65535) is required"])
            }
            future = onLink {
                link.open(transport, address: address, port: UInt16(port), exact: request.exact ?? true, owner: "admin")
                    .map { done in
                        // A UDP port's datagrams may come on the session's UDP channel too: attach to its path.
                        if transport == .udp { link.hold(portID: done.portID, AdminPort(portID: done.portID, link: link, events: events)) }
                        return done
                    }
            }
        case "redirect":
            guard let address = IPAddress(request.address ?? "0.0.0.0"), let port = request.port, port <= UInt32(UInt16.max) else {
                return respond(context, .badRequest, ["error": "address and port (0-65535) are required"])
            }
            // With a destination its LAN senders are relayed there; without, their datagrams are events.
            var relay: ForwardSpec?
            if let target = request.destination {
                let local = Endpoint(address, UInt16(port))
                guard let spec = try? ForwardSpec(parsing: "udp:\(link.name)/\(local)=\(target)"), spec.direction == .fromMediator else {
                    return respond(context, .badRequest, ["error": "destination HOST:PORT is not valid (IPv6 in brackets)"])
                }
                relay = spec
            }
            let registry = registry
            let logger = logger
            let limits = registry.udpFlowLimits
            future = onLink {
                link.redirect(address: address, port: UInt16(port), exact: request.exact ?? true, owner: "admin").map { done in
                    if let spec = relay {
                        let forward = UDPForwardFromMediator(
                            spec: spec, registry: registry, eventLoop: link.session.eventLoop, limits: limits,
                            now: { .now() }, logger: logger)
                        link.hold(portID: done.portID, AdminRedirectRelay(forward: forward, path: link.datagramPath, portID: done.portID))
                    } else {
                        link.hold(portID: done.portID, AdminPort(portID: done.portID, link: link, events: events))
                    }
                    return done
                }
            }
        case "connect":
            guard let d = request.destination, let destination = Endpoint(parsing: d) else {
                return respond(context, .badRequest, ["error": "destination HOST:PORT is required (IPv6 in brackets)"])
            }
            future = onLink {
                link.connect(portID: request.port ?? 0, to: destination, owner: "admin").map { done in
                    link.session.register(AdminPort(portID: done.portID, link: link, events: events))
                    return done
                }
            }
        case "listen":
            guard let port = request.port else { return respond(context, .badRequest, ["error": "port is required"]) }
            let backlog = request.backlog ?? 128
            future = onLink {
                link.listen(portID: port, backlog: backlog) { accepted in
                    link.session.register(AdminPort(portID: accepted.portID, link: link, events: events))
                    events.post(
                        ServerEvent(
                            mediator: link.name, kind: "accepted", port: accepted.portID,
                            detail: "on port \(accepted.listenerID) from \(accepted.peer)"))
                }
            }
        case "close":
            guard let port = request.port else { return respond(context, .badRequest, ["error": "port is required"]) }
            future = onLink { link.close(portID: port) }
        default:
            return respond(context, .notFound, ["error": "no operation '\(op)'; use open, redirect, connect, listen, close or echo"])
        }
        future = future.hop(to: context.eventLoop)
        future.whenComplete { [self] result in
            switch result {
            case .success(let done):
                events.post(ServerEvent(mediator: link.name, kind: op, port: done.portID, detail: "ok, local \(done.local)"))
                respond(context, .ok, OperationResult(port: done.portID, local: "\(done.local)"))
            case .failure(let error as OperationError):
                events.post(ServerEvent(mediator: link.name, kind: "\(op)-failed", detail: error.description))
                respond(context, .badGateway, ErrorView(error: "\(error.code)", errno: error.errno, message: error.message))
            case .failure(let error):
                respond(context, .internalServerError, ["error": "\(error)"])
            }
        }
    }

    /// The answer to one echo request, as `ctl ping`/`ctl traceroute` print it.
    struct EchoView: Encodable {
        var outcome: String
        var type: UInt8
        var code: UInt8
        var from: String
        var ttl: UInt8
        var size: UInt16
        var rttMicros: UInt32
        var sequence: UInt16
    }

    /// `POST /v1/mediators/NAME/echo` with `destination` (an IP address, or a host name the mediator
    /// resolves, optionally with `family` 4 or 6), and optionally `ttl` (64),
    /// `sequence` (1), `size` (56) and `timeoutMillis` (2000): one ICMP echo request from the mediator.
    private func echo(_ context: ChannelHandlerContext, _ link: MediatorLink, _ request: OperationRequest) {
        // A name goes to the mediator as it is, to be resolved in its LAN (docs/protocol.md §11.2).
        guard let d = request.destination, !d.isEmpty, d.utf8.count <= 255 else {
            return respond(context, .badRequest, ["error": "destination must be an IP address or a host name (1-255 bytes)"])
        }
        let destination = PosternWire.Host(d)
        guard let family = Frame.Echo.Family(rawValue: request.family ?? 0) else {
            return respond(context, .badRequest, ["error": "family must be 4 or 6"])
        }
        let size = request.size ?? 56
        guard size <= Frame.Echo.maxSize else {
            return respond(context, .badRequest, ["error": "size must be at most \(Frame.Echo.maxSize) bytes"])
        }
        let ttl = request.ttl ?? 64
        guard ttl > 0 else { return respond(context, .badRequest, ["error": "ttl must be 1-255"]) }
        let sequence = request.sequence ?? 1
        let timeout = request.timeoutMillis ?? 2000
        let echoed =
            link.eventLoop.inEventLoop
            ? link.echo(to: destination, family: family, ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeout)
            : link.eventLoop.flatSubmit {
                link.echo(to: destination, family: family, ttl: ttl, sequence: sequence, size: size, timeoutMillis: timeout)
            }
        echoed.hop(to: context.eventLoop)
            .whenComplete { [self] result in
                switch result {
                case .success(let r):
                    respond(
                        context, .ok,
                        EchoView(
                            outcome: "\(r.outcome)", type: r.icmpType, code: r.icmpCode, from: "\(r.from)", ttl: r.ttl, size: r.size,
                            rttMicros: r.rttMicros, sequence: sequence))
                case .failure(let error as OperationError):
                    respond(context, .badGateway, ErrorView(error: "\(error.code)", errno: error.errno, message: error.message))
                case .failure(let error):
                    respond(context, .internalServerError, ["error": "\(error)"])
                }
            }
    }

    struct ErrorView: Encodable {
        var error: String
        var errno: Int32
        var message: String
    }

    // MARK: - Events

    private func stream(_ context: ChannelHandlerContext, history: Bool) {
        state = .streaming
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/x-ndjson")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let write: (ServerEvent) -> Void = { [weak self] event in
            guard let self, self.state == .streaming, let data = try? encoder.encode(event) else { return }
            self.send(context, data)
        }
        if history { registry.events.history.forEach(write) }
        context.flush()
        subscription = registry.events.subscribe(write)
    }

    /// One event line. The bytes count against `maxEventBacklog` until the socket has taken them:
    /// a client that stops reading is dropped, so its events never pile up in the server.
    private func send(_ context: ChannelHandlerContext, _ data: Data) {
        let size = data.count + 1
        guard eventBacklog + size <= limits.maxEventBacklog else {
            logger.warning(
                "admin event stream to \(context.channel.remoteAddress?.display ?? "?") dropped: the client is not reading (\(eventBacklog) bytes waiting)"
            )
            state = .refused
            if let s = subscription { registry.events.unsubscribe(s) }
            subscription = nil
            context.close(promise: nil)
            return
        }
        eventBacklog += size
        var b = context.channel.allocator.buffer(capacity: size)
        b.writeBytes(data)
        b.writeInteger(UInt8(ascii: "\n"))
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { [weak self] _ in self?.eventBacklog -= size }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(b))), promise: written)
    }

    // MARK: - Responses

    private func respond<T: Encodable>(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        data.append(UInt8(ascii: "\n"))
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(data.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        var b = context.channel.allocator.buffer(capacity: data.count)
        b.writeBytes(data)
        context.write(wrapOutboundOut(.body(.byteBuffer(b))), promise: nil)
        endResponse(context, linger: state == .refused)
    }

    /// A file's bytes (a capture's pcap).
    private func respondBytes(_ context: ChannelHandlerContext, _ data: Data, type: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(data.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        var b = context.channel.allocator.buffer(capacity: data.count)
        b.writeBytes(data)
        context.write(wrapOutboundOut(.body(.byteBuffer(b))), promise: nil)
        endResponse(context)
    }

    /// One of the dashboard's files (`Dashboard`), with its security headers.
    private func respondAsset(_ context: ChannelHandlerContext, _ asset: Dashboard.Asset) {
        var headers = Dashboard.headers(asset)
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: asset.body)))), promise: nil)
        endResponse(context)
    }

    /// Ends a response: the connection closes after it unless the client keeps it alive.
    /// `linger`: the rest of a refused request may still be arriving, and closing now would answer
    /// it with a TCP reset, which can destroy the answer before the client reads it; so finish
    /// sending, swallow what comes, and close when the client does (or soon).
    private func endResponse(_ context: ChannelHandlerContext, linger: Bool = false) {
        let close = !keepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [weak self] _ in
            if linger {
                context.close(mode: .output, promise: nil)
                context.eventLoop.scheduleTask(in: .seconds(2)) { context.close(promise: nil) }
            } else if close {
                context.close(promise: nil)
            } else if context.channel.isActive {
                self?.armIdleTimer(context)
            }
        }
    }

    /// The Prometheus text exposition.
    private func respondText(_ context: ChannelHandlerContext, _ text: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(text.utf8.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        endResponse(context)
    }

    static func split(_ uri: String) -> (String, String) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, "") }
        return (String(uri[..<q]), String(uri[uri.index(after: q)...]))
    }
}
