#ifndef POSTERN_SHIMS_H
#define POSTERN_SHIMS_H

// The few C macros Swift cannot import. Everything else (libmnl calls, callbacks, attribute
// parsing) is done in Swift; keep this file small.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libmnl/libmnl.h>

/// MNL_SOCKET_BUFFER_SIZE: a macro calling sysconf(), so Swift does not see it.
/// min(page size, 8192): large enough for one kernel dump datagram.
size_t postern_mnl_socket_buffer_size(void);

/// RTNH_ALIGN(len): alignment of `struct rtnexthop` records inside RTA_MULTIPATH.
size_t postern_rtnh_align(size_t len);

/// Opens /dev/net/tun (non-blocking, close-on-exec) and attaches it to the tun device `name`
/// (IFF_TUN | IFF_NO_PI: bare IP packets, no packet-information header), creating the device if it
/// does not exist. Writes the kernel's name for it into `actual` (at least 16 bytes). Returns the
/// descriptor, or -errno. TUNSETIFF and struct ifreq are macros and a union Swift cannot build.
int postern_tun_open(const char *name, char *actual, size_t actual_size);

/// What `postern_icmp_recv` learned besides the bytes (ICMP echo in stream mode).
struct postern_icmp_received {
    /// 1: an ICMP error from the socket's error queue (IP_RECVERR); `type`/`code` are the error's.
    int is_error;
    uint8_t type;
    uint8_t code;
    /// The IP TTL of the datagram (IP_RECVTTL), -1 when the kernel gave none.
    int ttl;
    /// IPv4 address in network byte order: the sender, or for an error the router that sent it.
    uint32_t from;
};

/// Opens an IPv4 ICMP socket, close-on-exec: `raw` 0 an unprivileged datagram socket (the kernel
/// owns the echo identifier; errors come through the error queue), 1 a raw socket (needs
/// CAP_NET_RAW). Sets the TTL of what it sends to `ttl` and, on the datagram socket, IP_RECVERR and
/// IP_RECVTTL. Returns the descriptor or -errno. The cmsg and sock_extended_err macros are C only.
int postern_icmp_socket(int raw, int ttl);

/// Reads one datagram without blocking (`errqueue` 1: one queued error, MSG_ERRQUEUE) into `buf`,
/// filling `out`. Returns the byte count or -errno (-EAGAIN: nothing there).
ssize_t postern_icmp_recv(int fd, void *buf, size_t len, int errqueue, struct postern_icmp_received *out);

/// Like `postern_tun_open`, with IFF_VNET_HDR: every packet read or written carries a 10-byte
/// struct virtio_net_hdr in front. Then asks for the most offloads the kernel grants (TUNSETOFFLOAD:
/// checksum, TSO4/TSO6, USO4/USO6; then without USO; then checksum only) and writes the granted
/// TUN_F_* bits into `offloads` (0 when none was). Returns the descriptor, or -errno.
int postern_tun_open_offload(const char *name, char *actual, size_t actual_size, unsigned *offloads);

#endif
