import NIOCore
import NIOEmbedded
import PosternCapture
import PosternWire
import XCTest

@testable import PosternReplay

/// A replayed TCP flow's handler is freed with its connection: it kept its `ChannelHandlerContext`,
/// which holds it, so a replay held every flow it had run until it exited.
final class StreamFlowHandlerLifetimeTests: XCTestCase {
    func testHandlerIsFreedWhenItsConnectionCloses() throws {
        weak var freed: StreamFlowHandler?
        try {
            var flow = Flow(
                number: 1, transport: .tcp, initiator: Endpoint(IPAddress("10.0.0.1")!, 1),
                responder: Endpoint(IPAddress("10.0.0.2")!, 2), firstPacket: 1, startTime: 0)
            flow.events = [FlowEvent(time: 0, direction: .fromResponder, kind: .data([1, 2, 3]), packet: 1)]
            let channel = EmbeddedChannel()
            let handler = StreamFlowHandler(
                flow: flow, side: .fromInitiator, pacing: ReplayPacing(mode: .fast, captureStart: 0, replayStart: .now()),
                timeout: .seconds(5), onDone: { _, _, _ in })
            freed = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "10.0.0.2", port: 2)).wait()
            try channel.close().wait()
            // The embedded loop keeps cancelled tasks (the flow's deadline) until it runs them.
            channel.embeddedEventLoop.advanceTime(by: .hours(1))
        }()
        XCTAssertNil(freed, "the flow's handler outlived its closed connection")
    }
}
