import PosternCapture
import PosternWire
import XCTest

/// The pure parts of a replay: each side's script from the capture order, and the checks that find
/// the first differing byte.
final class ReplayCheckTests: XCTestCase {
    func flow(_ events: [(FlowDirection, FlowEvent.Kind)], transport: Flow.Transport = .tcp) -> Flow {
        var flow = Flow(
            number: 1, transport: transport, initiator: Endpoint(IPAddress("10.0.0.1")!, 1), responder: Endpoint(IPAddress("10.0.0.2")!, 2),
            firstPacket: 1, startTime: 0)
        flow.events = events.enumerated().map {
            FlowEvent(time: Int64($0.offset), direction: $0.element.0, kind: $0.element.1, packet: $0.offset + 1)
        }
        return flow
    }

    func testScriptsWaitForWhatTheCaptureShowsBefore() {
        let f = flow([
            (.fromInitiator, .data([1, 2])), (.fromInitiator, .data([3])), (.fromResponder, .data([9, 9, 9])),
            (.fromResponder, .data([8])), (.fromInitiator, .fin), (.fromResponder, .fin),
        ])
        XCTAssertEqual(ReplayStep.script(for: f, side: .fromInitiator), [.send([1, 2, 3], time: 0), .expect(4), .finish(time: 4)])
        XCTAssertEqual(ReplayStep.script(for: f, side: .fromResponder), [.expect(3), .send([9, 9, 9, 8], time: 2), .finish(time: 5)])
    }

    func testDatagramScriptsCountDatagrams() {
        let f = flow(
            [(.fromInitiator, .datagram([1])), (.fromInitiator, .datagram([])), (.fromResponder, .datagram([2]))], transport: .udp)
        XCTAssertEqual(ReplayStep.script(for: f, side: .fromInitiator), [.send([1], time: 0), .send([], time: 1), .expect(1)])
        XCTAssertEqual(ReplayStep.script(for: f, side: .fromResponder), [.expect(2), .send([2], time: 2)])
    }

    func testStreamCheckFindsFirstDifferenceAndEnding() {
        let f = flow([
            (.fromResponder, .data([1, 2, 3])), (.fromResponder, .data([4, 5])), (.fromResponder, .fin), (.fromInitiator, .fin),
        ])
        let good = DirectionCheck.stream(f, direction: .fromResponder, received: [1, 2, 3, 4, 5], ending: "fin")
        XCTAssertTrue(good.ok)
        XCTAssertEqual(good.deliveredPackets, 2)
        let wrong = DirectionCheck.stream(f, direction: .fromResponder, received: [1, 2, 3, 4, 6], ending: "fin")
        XCTAssertFalse(wrong.ok)
        XCTAssertEqual(wrong.firstDifference, 4)
        XCTAssertEqual(wrong.deliveredPackets, 1)
        let short = DirectionCheck.stream(f, direction: .fromResponder, received: [1, 2], ending: "reset")
        XCTAssertEqual(short.firstDifference, 2)
        XCTAssertEqual(short.observedEnding, "reset")
        XCTAssertEqual(short.expectedEnding, "fin")
        let long = DirectionCheck.stream(f, direction: .fromResponder, received: [1, 2, 3, 4, 5, 6], ending: "fin")
        XCTAssertEqual(long.firstDifference, 5)
        let endingOnly = DirectionCheck.stream(f, direction: .fromResponder, received: [1, 2, 3, 4, 5], ending: "reset")
        XCTAssertFalse(endingOnly.ok)
        XCTAssertNil(endingOnly.firstDifference)
    }

    func testResetEndsBothDirections() {
        let f = flow([(.fromInitiator, .data([1])), (.fromResponder, .reset)])
        XCTAssertEqual(DirectionCheck.stream(f, direction: .fromInitiator, received: [1], ending: "reset").expectedEnding, "reset")
        XCTAssertEqual(DirectionCheck.stream(f, direction: .fromResponder, received: [], ending: "reset").expectedEnding, "reset")
    }

    func testDatagramCheckInOrderAndContent() {
        let f = flow(
            [(.fromInitiator, .datagram([1, 1])), (.fromInitiator, .datagram([2, 2])), (.fromInitiator, .datagram([3]))], transport: .udp)
        XCTAssertTrue(DirectionCheck.datagrams(f, direction: .fromInitiator, received: [[1, 1], [2, 2], [3]]).ok)
        let swapped = DirectionCheck.datagrams(f, direction: .fromInitiator, received: [[1, 1], [3], [2, 2]])
        XCTAssertEqual(swapped.firstDifference, 2)
        XCTAssertEqual(swapped.deliveredPackets, 1)
        let lost = DirectionCheck.datagrams(f, direction: .fromInitiator, received: [[1, 1], [2, 2]])
        XCTAssertEqual(lost.firstDifference, 4)
        XCTAssertEqual(lost.deliveredPackets, 2)
    }

    func testReportFailsOnlyForMismatches() {
        var incomplete = flow([(.fromInitiator, .data([1]))])
        incomplete.incomplete = ["no SYN"]
        var complete = flow([(.fromInitiator, .data([1])), (.fromInitiator, .fin), (.fromResponder, .fin)])
        complete.number = 2
        complete.ending = .closed
        let good = [
            2: SideResult(
                flow: 2, check: DirectionCheck.stream(complete, direction: .fromInitiator, received: [1], ending: "fin"), milliseconds: 3,
                problem: nil)
        ]
        let back = [
            2: SideResult(
                flow: 2, check: DirectionCheck.stream(complete, direction: .fromResponder, received: [], ending: "fin"), milliseconds: 2,
                problem: nil)
        ]
        let report = ReplayReport.assemble(
            capture: "x", mode: "fast", flows: [incomplete, complete], initiatorSide: back, responderSide: good)
        XCTAssertEqual(report.flows.map(\.status), [.skipped, .ok])
        XCTAssertFalse(report.failed)
        let missing = ReplayReport.assemble(capture: "x", mode: "fast", flows: [complete], initiatorSide: back, responderSide: [:])
        XCTAssertTrue(missing.failed)
        XCTAssertTrue(missing.flows[0].line.contains("no result from the responder side"), missing.flows[0].line)
    }
}
