/* cluster_client.h — the CLI side of the coordinator's control port (status and generation). */
#ifndef MR_CLUSTER_CLIENT_H
#define MR_CLUSTER_CLIENT_H

#include "common/status.h"
#include "proto/frame.h"

/* Resolves the coordinator endpoint from --coordinator HOST:PORT or a cluster --config file
 * (coordinator.address, else listen). Logs and fails when neither gives one. */
mr_status mr_client_endpoint(const char *endpoint, const char *config, char *host, size_t cap,
                             int *port);
/* Connects and exchanges Hello (with `role`) / Welcome; returns the socket or -1. */
int mr_client_open(const char *host, int port, Moerack__Role role, int timeout_ms);

/* One status poll; *out owns the decoded envelope (mr_frame_free). */
mr_status mr_client_status(const char *host, int port, Moerack__Envelope **out);

/* One greedy GenerateRequest of n prompt ids and max_tokens new tokens on its own connection;
 * returns the seconds from sending to the reply, or -1 (logged) if it failed. */
double mr_client_generate(const char *host, int port, const int32_t *ids, int n, int max_tokens);
#endif
