#ifndef POSTERN_SHIMS_H
#define POSTERN_SHIMS_H

// The few C macros Swift cannot import. Everything else (libmnl calls, callbacks, attribute
// parsing) is done in Swift; keep this file small.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libmnl/libmnl.h>
#include <linux/filter.h>

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

/// What `postern_icmp6_recv` learned besides the bytes (ICMPv6 echo in stream mode).
struct postern_icmp6_received {
    /// 1: an ICMPv6 error from the socket's error queue (IPV6_RECVERR); `type`/`code` are the error's.
    int is_error;
    uint8_t type;
    uint8_t code;
    /// The error's extra word: for packet too big, the MTU the router reported.
    uint32_t info;
    /// The hop limit the datagram arrived with (IPV6_RECVHOPLIMIT), -1 when the kernel gave none.
    int hops;
    /// The sender, or for an error the router that sent it, in network order.
    uint8_t from[16];
};

/// Opens an ICMPv6 socket, close-on-exec: `raw` 0 an unprivileged datagram socket (the same
/// net.ipv4.ping_group_range admits it; the kernel owns the echo identifier and the checksum, errors
/// come through the error queue), 1 a raw socket (CAP_NET_RAW; the kernel still computes the
/// checksum, RFC 3542; an ICMP6_FILTER lets through only echo replies and errors). Sets the unicast
/// hop limit to `hops`, IPV6_RECVHOPLIMIT and, on the datagram socket, IPV6_RECVERR. Returns the
/// descriptor or -errno.
int postern_icmp6_socket(int raw, int hops);

/// Reads one datagram without blocking (`errqueue` 1: one queued error, MSG_ERRQUEUE) into `buf`
/// (the ICMPv6 message, from its type byte: sockets of this family never hand over the IPv6
/// header), filling `out`. Returns the byte count or -errno (-EAGAIN: nothing there).
ssize_t postern_icmp6_recv(int fd, void *buf, size_t len, int errqueue, struct postern_icmp6_received *out);

/// Like `postern_tun_open`, with IFF_VNET_HDR: every packet read or written carries a 10-byte
/// struct virtio_net_hdr in front. Then asks for the most offloads the kernel grants (TUNSETOFFLOAD:
/// checksum, TSO4/TSO6, USO4/USO6; then without USO; then checksum only) and writes the granted
/// TUN_F_* bits into `offloads` (0 when none was). Returns the descriptor, or -errno.
int postern_tun_open_offload(const char *name, char *actual, size_t actual_size, unsigned *offloads);

/// Opens an AF_PACKET socket (non-blocking, close-on-exec) for the raw LAN presence: attaches the
/// classic BPF `program` (SO_ATTACH_FILTER) before binding it to interface `ifindex` for every
/// protocol, so only frames the program accepts are ever queued; sets PACKET_VNET_HDR (each frame
/// read or written comes after a 10-byte struct virtio_net_hdr); asks for a receive buffer of
/// `receive_buffer` bytes (0: the default). Returns the descriptor or -errno (-EPERM without
/// CAP_NET_RAW). struct sock_fprog and sockaddr_ll are easier built in C.
int postern_packet_open(int ifindex, const struct sock_filter *program, unsigned short length, int receive_buffer);

/// Blocks until frames arrive on `fd` or `wake_fd` becomes readable, then reads up to `count`
/// frames (at most 256) with one recvmmsg(2) into `buffer`, frame i at i * `slot`, its length in
/// `lengths[i]` (0 for a frame cut by the slot). Returns the frame count, 0 when woken through
/// `wake_fd`, or -errno.
int postern_packet_receive(int fd, int wake_fd, uint8_t *buffer, size_t slot, unsigned count, uint32_t *lengths);

/// An eventfd (close-on-exec, non-blocking) that wakes `postern_packet_receive` when written to.
/// Returns the descriptor or -errno.
int postern_wake_open(void);

/// Makes the packet socket `fd` receive frames to the Ethernet multicast group `mac` (6 bytes) on
/// interface `ifindex` (PACKET_ADD_MEMBERSHIP, PACKET_MR_MULTICAST: the interface's filter lets
/// the group in while the socket lives). Returns 0 or -errno.
int postern_packet_add_multicast(int fd, int ifindex, const uint8_t *mac);

/// glibc malloc policy for a long-running relay (mallopt(3), malloc.h is not in Swift's Glibc module):
/// a fixed `trim_threshold` (bytes of free memory at the top of an arena that free() gives back) and
/// `mmap_threshold` (allocations this large get their own mapping, returned whole by free()). Fixing
/// either turns off glibc's dynamic thresholds, which after the first large free() raise them to
/// 32 and 64 MiB, so a relay that once held many large buffers keeps every page. Returns 1 when
/// glibc took both values, 0 otherwise.
int postern_malloc_tune(size_t trim_threshold, size_t mmap_threshold);

/// malloc_trim(0): gives the free pages inside every arena back to the kernel (MADV_DONTNEED).
/// Returns 1 when some memory was released.
int postern_malloc_trim(void);

/// Bytes free inside malloc's arenas (mallinfo2's fordblks): what a trim could give back, at most.
size_t postern_malloc_free_bytes(void);

#endif
