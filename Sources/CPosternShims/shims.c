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
