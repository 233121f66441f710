import FrameFuzz

// libFuzzer target for the frame codec. The check — every promise of the codec it tests — is
// `checkFrameStream` in Tests/PosternWireTests/FrameFuzz (the `FrameFuzz` module here, through a
// symlink), the same code the unit tests replay the corpus and past crashes with.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    do {
        try checkFrameStream(Array(UnsafeRawBufferPointer(start: start, count: count)))
    } catch {
        // A broken promise: libFuzzer saves the input. fatalError keeps its message in release.
        fatalError("\(error)")
    }
    return 0
}
