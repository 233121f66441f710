#define _GNU_SOURCE  // recvmmsg(2) and struct mmsghdr
#include "CPosternShims.h"

#include <unistd.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <malloc.h>

// The Swift side reads these headers with loadUnaligned(as:) and strides over nexthop records by
// hand; pin the layouts it relies on so a surprising ABI fails the build instead of misparsing.
_Static_assert(sizeof(struct nlmsghdr) == 16, "nlmsghdr layout");
_Static_assert(sizeof(struct nlattr) == 4, "nlattr layout");
_Static_assert(sizeof(struct ifinfomsg) == 16, "ifinfomsg layout");
_Static_assert(offsetof(struct ifinfomsg, ifi_index) == 4, "ifinfomsg.ifi_index offset");
_Static_assert(offsetof(struct ifinfomsg, ifi_flags) == 8, "ifinfomsg.ifi_flags offset");
_Static_assert(sizeof(struct ifaddrmsg) == 8, "ifaddrmsg layout");
_Static_assert(offsetof(struct ifaddrmsg, ifa_index) == 4, "ifaddrmsg.ifa_index offset");
_Static_assert(sizeof(struct rtmsg) == 12, "rtmsg layout");
_Static_assert(sizeof(struct rtnexthop) == 8, "rtnexthop layout");
_Static_assert(offsetof(struct rtnexthop, rtnh_ifindex) == 4, "rtnexthop.rtnh_ifindex offset");
_Static_assert(RTNH_ALIGNTO == 4, "rtnexthop alignment");
// The request builder writes the address family into the first byte of every request header.
_Static_assert(offsetof(struct ifinfomsg, ifi_family) == 0, "ifi_family first");
_Static_assert(offsetof(struct ifaddrmsg, ifa_family) == 0, "ifa_family first");
_Static_assert(offsetof(struct rtmsg, rtm_family) == 0, "rtm_family first");

size_t postern_mnl_socket_buffer_size(void) {
    return (size_t)MNL_SOCKET_BUFFER_SIZE;
}

size_t postern_rtnh_align(size_t len) {
    return RTNH_ALIGN(len);
}

int postern_tun_open(const char *name, char *actual, size_t actual_size) {
    if (strlen(name) >= IFNAMSIZ || actual_size < IFNAMSIZ) return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int code = errno;
        close(fd);
        return -code;
    }
    memcpy(actual, ifr.ifr_name, IFNAMSIZ);
    actual[IFNAMSIZ - 1] = 0;
    return fd;
}

// MARK: - ICMP echo in stream mode

#include <netinet/in.h>
#include <netinet/ip.h>
#include <linux/errqueue.h>
#include <sys/socket.h>

int postern_icmp_socket(int raw, int ttl) {
    int fd = socket(AF_INET, (raw ? SOCK_RAW : SOCK_DGRAM) | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd < 0) return -errno;
    int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) < 0
        || (!raw && setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on) < 0)
        || setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof on) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

ssize_t postern_icmp_recv(int fd, void *buf, size_t len, int errqueue, struct postern_icmp_received *out) {
    struct sockaddr_in from;
    union {
        char bytes[512];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control.bytes, .msg_controllen = sizeof control.bytes,
    };
    memset(&from, 0, sizeof from);
    memset(out, 0, sizeof *out);
    out->ttl = -1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | (errqueue ? MSG_ERRQUEUE : 0));
    if (n < 0) return -errno;
    out->from = from.sin_addr.s_addr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != IPPROTO_IP) continue;
        if (c->cmsg_type == IP_TTL && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int t;
            memcpy(&t, CMSG_DATA(c), sizeof t);
            out->ttl = t;
        } else if (c->cmsg_type == IP_RECVERR && c->cmsg_len >= CMSG_LEN(sizeof(struct sock_extended_err))) {
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof ee);
            if (ee.ee_origin != SO_EE_ORIGIN_ICMP) continue;
            out->is_error = 1;
            out->type = ee.ee_type;
            out->code = ee.ee_code;
            // SO_EE_OFFENDER: the address that sent the error follows the structure.
            if (c->cmsg_len >= CMSG_LEN(sizeof ee + sizeof(struct sockaddr_in))) {
                struct sockaddr_in offender;
                memcpy(&offender, (const char *)CMSG_DATA(c) + sizeof ee, sizeof offender);
                if (offender.sin_family == AF_INET) out->from = offender.sin_addr.s_addr;
            }
        }
    }
    return n;
}

// MARK: - tun device with offloads (virtio-net header, TSO/USO)

// Debian 12's headers predate USO (Linux 6.2); the values are the kernel's ABI.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

int postern_tun_open_offload(const char *name, char *actual, size_t actual_size, unsigned *offloads) {
    *offloads = 0;
    if (strlen(name) >= IFNAMSIZ || actual_size < IFNAMSIZ) return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int code = errno;
        close(fd);
        return -code;
    }
    int size = 10;  // struct virtio_net_hdr, the layout the Swift side reads and writes
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) {
        int code = errno;
        close(fd);
        return -code;
    }
    // The most the kernel offers first; older kernels lack USO (Linux 6.2), then TSO is still worth it.
    const unsigned tries[] = {
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        TUN_F_CSUM,
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
            *offloads = tries[i];
            break;
        }
    }
    memcpy(actual, ifr.ifr_name, IFNAMSIZ);
    actual[IFNAMSIZ - 1] = 0;
    return fd;
}

// MARK: - Raw LAN presence (AF_PACKET)

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>

int postern_packet_open(int ifindex, const struct sock_filter *program, unsigned short length, int receive_buffer) {
    // Protocol 0: the socket receives nothing until bind(), so no frame slips in before the filter.
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sock_fprog fprog = {.len = length, .filter = (struct sock_filter *)program};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0) goto fail;
#ifdef PACKET_IGNORE_OUTGOING
    // Linux 4.20+: the kernel does not even queue this host's own frames for us (the filter drops
    // them too, for older kernels).
    int on = 1;
    (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &on, sizeof on);
#endif
    // Every frame comes after a struct virtio_net_hdr saying which offloads it still needs (a
    // checksum to finish, a super-packet to cut), and every frame sent goes after one (zero: none).
    int vnet = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &vnet, sizeof vnet) < 0) goto fail;
    if (receive_buffer > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer, sizeof receive_buffer) < 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int postern_packet_add_multicast(int fd, int ifindex, const uint8_t *mac) {
    struct packet_mreq request;
    memset(&request, 0, sizeof request);
    request.mr_ifindex = ifindex;
    request.mr_type = PACKET_MR_MULTICAST;
    request.mr_alen = 6;
    memcpy(request.mr_address, mac, 6);
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &request, sizeof request) < 0) return -errno;
    return 0;
}

int postern_packet_receive(int fd, int wake_fd, uint8_t *buffer, size_t slot, unsigned count, uint32_t *lengths) {
    if (count > 256) count = 256;
    for (;;) {
        struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (fds[1].revents) return 0;
        struct mmsghdr messages[256];
        struct iovec vectors[256];
        memset(messages, 0, sizeof(struct mmsghdr) * count);
        for (unsigned i = 0; i < count; i++) {
            vectors[i].iov_base = buffer + (size_t)i * slot;
            vectors[i].iov_len = slot;
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, messages, count, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            // A frame longer than the slot arrives cut: report it as empty, the caller skips it.
            lengths[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : messages[i].msg_len;
        }
        if (n > 0) return n;
    }
}

#include <sys/eventfd.h>

int postern_wake_open(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

#include <netinet/icmp6.h>

int postern_icmp6_socket(int raw, int hops) {
    int fd = socket(AF_INET6, (raw ? SOCK_RAW : SOCK_DGRAM) | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (fd < 0) return -errno;
    int on = 1;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) < 0
        || (!raw && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on) < 0)
        || setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (raw) {
        // A raw ICMPv6 socket gets every ICMPv6 message the host receives (neighbour discovery,
        // router advertisements...): keep only what can answer an echo request.
        struct icmp6_filter filter;
        ICMP6_FILTER_SETBLOCKALL(&filter);
        ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
        ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filter);
        ICMP6_FILTER_SETPASS(ICMP6_PACKET_TOO_BIG, &filter);
        ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &filter);
        if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    return fd;
}

ssize_t postern_icmp6_recv(int fd, void *buf, size_t len, int errqueue, struct postern_icmp6_received *out) {
    struct sockaddr_in6 from;
    union {
        char bytes[512];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control.bytes, .msg_controllen = sizeof control.bytes,
    };
    memset(&from, 0, sizeof from);
    memset(out, 0, sizeof *out);
    out->hops = -1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | (errqueue ? MSG_ERRQUEUE : 0));
    if (n < 0) return -errno;
    memcpy(out->from, &from.sin6_addr, 16);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != IPPROTO_IPV6) continue;
        if (c->cmsg_type == IPV6_HOPLIMIT && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int h;
            memcpy(&h, CMSG_DATA(c), sizeof h);
            out->hops = h;
        } else if (c->cmsg_type == IPV6_RECVERR && c->cmsg_len >= CMSG_LEN(sizeof(struct sock_extended_err))) {
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof ee);
            if (ee.ee_origin != SO_EE_ORIGIN_ICMP6) continue;
            out->is_error = 1;
            out->type = ee.ee_type;
            out->code = ee.ee_code;
            out->info = ee.ee_info;
            // SO_EE_OFFENDER: the address that sent the error follows the structure.
            if (c->cmsg_len >= CMSG_LEN(sizeof ee + sizeof(struct sockaddr_in6))) {
                struct sockaddr_in6 offender;
                memcpy(&offender, (const char *)CMSG_DATA(c) + sizeof ee, sizeof offender);
                if (offender.sin6_family == AF_INET6) memcpy(out->from, &offender.sin6_addr, 16);
            }
        }
    }
    return n;
}

int postern_malloc_tune(size_t trim_threshold, size_t mmap_threshold) {
    int ok = mallopt(M_TRIM_THRESHOLD, (int)trim_threshold);
    ok &= mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    return ok;
}

int postern_malloc_trim(void) {
    return malloc_trim(0);
}

size_t postern_malloc_free_bytes(void) {
    return mallinfo2().fordblks;
}
