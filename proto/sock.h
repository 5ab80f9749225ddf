/* sock.h — plain TCP sockets for the control plane (the data plane goes through xport.h). */
#ifndef MR_SOCK_H
#define MR_SOCK_H

/* Connected, blocking-mode socket with TCP_NODELAY, or -1 (errno kept). */
int mr_sock_connect(const char *host, int port, int timeout_ms);
/* Listening non-blocking socket on host:port (port 0: any; *bound receives it), or -1. */
int mr_sock_listen(const char *host, int port, int *bound);

#endif
