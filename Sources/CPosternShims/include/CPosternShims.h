#ifndef POSTERN_SHIMS_H
#define POSTERN_SHIMS_H

// The few C macros Swift cannot import. Everything else (libmnl calls, callbacks, attribute
// parsing) is done in Swift; keep this file small.

#include <stddef.h>
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

#endif
