import Logging
import NIOCore
import NIOSSL
import NIOTLS
import PosternCore
import PosternTunnel
import X509

/// Sits above the TLS handler: turns TLS failures into sentences and, once the handshake is done,
/// tells the session what it learned (`TransportReadyEvent`): the server key (channel binding) and,
/// with mutual TLS, the names of the mediator's certificate.
final class TLSEvents: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let client: PinCheck?
    /// Server end: its own key, and whether mediators must present a certificate.
    private let server: (key: KeyFingerprint, requiresClientCertificate: Bool)?
    weak var connection: TransportConnection?

    init(client: PinCheck) {
        self.client = client
        self.server = nil
    }

    init(server: (key: KeyFingerprint, requiresClientCertificate: Bool)) {
        self.client = nil
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // NIOSSL gathers the plaintext of every read of one read event in one buffer, which it keeps
        // at its largest size for the tunnel's life (8 MiB on both ends after eight streams with
        // NIO's 4 reads of up to 1 MiB each): one read per event keeps it to twice a read.
        try? context.channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: RelayBuffers.relayedReadsPerRead)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted = event else {
            return context.fireUserInboundEventTriggered(event)
        }
        let facts: TransportFacts
        if let client {
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
            client.handshakeCompleted(peer: peer)
            facts = TransportFacts(channelBinding: client.presented?.bytes ?? [])
        } else {
            // Mutual TLS: the certificate was verified against --mediator-ca; the session machine
            // checks that it names the mediator.
            let peer = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
            facts = TransportFacts(
                channelBinding: server?.key.bytes ?? [], peerCertificateNames: peer.map { CertificateNames.of($0) },
                requiresClientCertificate: server?.requiresClientCertificate ?? false)
        }
        connection?.facts = facts
        context.fireUserInboundEventTriggered(event)
        context.fireUserInboundEventTriggered(TransportReadyEvent(facts: facts))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let refusal = client?.refusal {
            context.fireErrorCaught(TransportError(refusal, aboutTrust: true))
        } else if TLSErrorText.isTLSError(error) {
            // A certificate refused either way is a trust failure, logged loudly, but no reason to stop:
            // the alert that says so is unauthenticated (anyone on the path can send it).
            let (text, trust) = TLSErrorText.classify(error, client: client != nil)
            context.fireErrorCaught(TransportError(text, aboutTrust: trust))
        } else {
            context.fireErrorCaught(error)
        }
    }
}
