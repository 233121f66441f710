/// The I/O objects a mediator keeps for each kind of port, named as types so `MediatorPortTable` can
/// hold them without knowing what they are: the table decides, the I/O layer acts on its handles. The
/// tests use plain values.
public protocol MediatorPortHandles {
    /// An opened TCP port's bound socket.
    associatedtype Reserved
    /// A connected or accepted TCP port.
    associatedtype Stream
    /// A listening TCP port.
    associatedtype Listener
    /// An opened UDP port.
    associatedtype Datagram
}
