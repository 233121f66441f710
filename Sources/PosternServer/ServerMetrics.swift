import CoreMetrics
import Foundation
import NIOCore
import Prometheus

/// The Prometheus exposition of the server (`GET /metrics`). Two parts:
///
/// - the counters and gauges, rendered at scrape time from a `ServerStatus` into a fresh registry:
///   the data path keeps plain counters on its event loop and pays nothing per packet for metrics;
///   a mediator or forward that is gone simply stops being listed;
/// - the latency histograms (handshake, forward connect), recorded through swift-metrics `Timer`s
///   once per handshake or connection, which live as long as the server.
///
/// Label values (mediator names, forward specs) are user input: swift-prometheus escapes them.
public final class ServerMetrics: Sendable {
    private let histograms = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let handshake: CoreMetrics.Timer

    public init() {
        var factory = PrometheusMetricsFactory(registry: histograms)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        handshake = CoreMetrics.Timer(label: "postern_handshake_seconds", factory: factory)
    }

    /// A session's time from accepted connection to established (TLS and proof).
    public func handshakeTook(_ t: TimeAmount) {
        handshake.recordNanoseconds(t.nanoseconds)
    }

    /// The timer of one forward's connect latency (accept to the mediator's answer).
    public func connectTimer(forward: String) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: "postern_forward_connect_seconds", dimensions: [("forward", forward)], factory: factory)
    }

    /// The whole exposition for `status`.
    public func text(_ status: ServerStatus) -> String {
        Self.render(status) + histograms.emitToString()
    }

    /// The counters and gauges of `status`, in the text exposition format.
    public static func render(_ status: ServerStatus) -> String {
        let r = PrometheusCollectorRegistry()
        gauge(r, "postern_build_info", "The running version (always 1).", [("version", status.version)]).set(Int64(1))
        gauge(r, "postern_uptime_seconds", "Seconds since the server started.").set(status.uptimeSeconds)
        gauge(r, "process_resident_memory_bytes", "Resident memory of the server process.").set(
            Int64(clamping: status.process.residentBytes))
        gauge(r, "process_open_fds", "Open file descriptors of the server process.").set(Int64(status.process.openFiles))
        for m in status.mediators {
            let l = [("mediator", m.name)]
            gauge(r, "postern_mediator_connected", "1 while the mediator has an established session.", l)
                .set(Int64(m.connected ? 1 : 0))
            counter(r, "postern_mediator_sessions_total", "Sessions admitted for the mediator.", l)
                .increment(by: Int64(clamping: m.sessions))
            counter(r, "postern_mediator_reconnects_total", "Sessions after the first.", l)
                .increment(by: Int64(clamping: m.reconnects))
            gauge(r, "postern_mediator_ports_open", "Ports the server holds on the mediator.", l)
                .set(Int64(m.ports))
            for (direction, value) in [("in", m.bytesIn), ("out", m.bytesOut)] {
                counter(
                    r, "postern_mediator_bytes_total", "Payload bytes of the current session, in from the mediator or out to it.",
                    l + [("direction", direction)]
                ).increment(by: Int64(clamping: value))
            }
            for path in ["udp", "tcp"] {
                gauge(
                    r, "postern_mediator_datagram_path", "1 for the path the mediator's datagrams take now (UDP channel or TCP channel).",
                    l + [("path", path)]
                ).set(Int64(m.datagramPath == path ? 1 : 0))
            }
            for (what, value) in [("sent", m.udpSent), ("received", m.udpReceived)] {
                counter(r, "postern_mediator_udp_channel_datagrams_total", "Datagrams on the session's UDP channels.", l + [("what", what)])
                    .increment(by: Int64(clamping: value))
            }
            for (channel, rtt) in [("tcp", m.keepaliveRTTSeconds), ("udp", m.udpKeepaliveRTTSeconds)] {
                guard let rtt else { continue }
                gauge(
                    r, "postern_mediator_keepalive_rtt_seconds", "The latest keepalive round trip, per channel.", l + [("channel", channel)]
                )
                .set(rtt)
            }
            for (end, c) in (m.tunPackets ?? [:]).sorted(by: { $0.key < $1.key }) {
                let e = l + [("end", end)]
                for (direction, value) in [("to_lan", c.toLAN), ("from_lan", c.fromLAN)] {
                    counter(r, "postern_mediator_tun_packets_total", "TUN mode packets carried, per end.", e + [("direction", direction)])
                        .increment(by: Int64(clamping: value))
                }
                for (reason, value) in c.dropped.sorted(by: { $0.key < $1.key }) {
                    counter(
                        r, "postern_mediator_tun_dropped_total", "TUN mode packets dropped, per end and reason.", e + [("reason", reason)]
                    )
                    .increment(by: Int64(clamping: value))
                }
                counter(r, "postern_mediator_tun_icmp_errors_total", "ICMP too-big errors TUN mode sent back, per end.", e)
                    .increment(by: Int64(clamping: c.fragmentationNeeded))
                if let o = c.offload {
                    gauge(
                        r, "postern_mediator_tun_offloads",
                        "1, labelled with the offloads the kernel granted the end's tun device (none: without; off: --tun-offload off).",
                        e + [("offloads", o.asked ? o.offloads : "off")]
                    ).set(Int64(1))
                    for (what, value) in [
                        ("super_packets_read", o.superPacketsRead), ("coalesced_writes", o.coalescedWrites), ("refused", o.offloadRefused),
                    ] {
                        counter(
                            r, "postern_mediator_tun_offload_total",
                            "TUN mode device offloads used, per end: super-packets read, merged writes, reads refused.",
                            e + [("what", what)]
                        ).increment(by: Int64(clamping: value))
                    }
                }
            }
        }
        for f in status.forwards {
            let l = [("forward", f.spec), ("mediator", f.mediator)]
            for state in ["listening", "waiting", "failed"] {
                gauge(r, "postern_forward_state", "1 for the forward's current state.", l + [("state", state)]).set(
                    Int64(f.state == state ? 1 : 0))
            }
            gauge(r, "postern_forward_connections_open", "Connections (or UDP flows) open now.", l)
                .set(Int64(f.connectionsOpen))
            counter(r, "postern_forward_connections_total", "Connections relayed since start.", l)
                .increment(by: Int64(clamping: f.connectionsTotal))
            for (direction, value) in [("to_mediator", f.bytesToMediator), ("from_mediator", f.bytesFromMediator)] {
                counter(
                    r, "postern_forward_bytes_total", "Payload bytes relayed, open connections included.", l + [("direction", direction)]
                ).increment(by: Int64(clamping: value))
            }
            counter(r, "postern_forward_refusals_total", "Connections refused: mediator not connected.", l)
                .increment(by: Int64(clamping: f.refusals))
            counter(
                r, "postern_forward_policy_denials_total",
                "Connections (UDP: datagrams) refused by policy: the forward's allow= list or the mediator's.", l
            ).increment(
                by: Int64(clamping: f.policyDenials))
            counter(r, "postern_forward_errors_total", "Connections that failed otherwise.", l)
                .increment(by: Int64(clamping: f.errors))
            counter(r, "postern_forward_rate_limit_drops_total", "Datagrams dropped over the forward's rate= limit.", l)
                .increment(by: Int64(clamping: f.rateLimitDrops))
        }
        return r.emitToString()
    }

    private static func gauge(_ r: PrometheusCollectorRegistry, _ name: String, _ help: String, _ labels: [(String, String)] = [])
        -> Prometheus.Gauge
    {
        r.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    private static func counter(_ r: PrometheusCollectorRegistry, _ name: String, _ help: String, _ labels: [(String, String)])
        -> Prometheus.Counter
    {
        r.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }
}
