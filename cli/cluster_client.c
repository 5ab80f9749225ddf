#include "cli/cluster_client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cluster_config.h"
#include "common/config_table.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/sock.h"

mr_status mr_client_endpoint(const char *endpoint, const char *config, char *host, size_t cap,
                             int *port) {
    if (endpoint) {
        if (mr_parse_endpoint(endpoint, host, cap, port) != MR_OK) {
            MR_LOG_ERROR(MR_LOG_CLI, "--coordinator: '%s' is not host:port", endpoint);
            return MR_ERR_INVALID;
        }
        return MR_OK;
    }
    if (!config) {
        MR_LOG_ERROR(MR_LOG_CLI, "give --coordinator HOST:PORT or --config FILE");
        return MR_ERR_INVALID;
    }
    mr_cluster_config cc;
    if (mr_cluster_config_load(config, &cc) != MR_OK) return MR_ERR_INVALID;
    const char *addr = cc.coord.address[0] ? cc.coord.address : cc.coord.listen;
    mr_status st = mr_parse_endpoint(addr, host, cap, port);
    mr_cluster_config_free(&cc);
    return st;
}

int mr_client_open(const char *host, int port, Moerack__Role role, int timeout_ms) {
    int fd = mr_sock_connect(host, port, timeout_ms);
    if (fd < 0) return -1;
    Moerack__Hello hello = MOERACK__HELLO__INIT;
    hello.proto_major = MR_PROTO_MAJOR;
    hello.proto_minor = MR_PROTO_MINOR;
    hello.role = role;
    hello.node_name = "moerack-cli";
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    Moerack__Envelope *rep = NULL;
    if (mr_frame_send(fd, &env, timeout_ms) != MR_OK ||
        mr_frame_recv(fd, MR_FRAME_MAX_DEFAULT, timeout_ms, &rep) != MR_OK) {
        close(fd);
        return -1;
    }
    int ok = rep->msg_case == MOERACK__ENVELOPE__MSG_WELCOME;
    if (!ok && rep->msg_case == MOERACK__ENVELOPE__MSG_ERROR)
        MR_LOG_ERROR(MR_LOG_CLI, "coordinator refused: %s", rep->error->message);
    mr_frame_free(rep);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

mr_status mr_client_status(const char *host, int port, Moerack__Envelope **out) {
    int fd = mr_client_open(host, port, MOERACK__ROLE__ROLE_STATUS, 3000);
    if (fd < 0) return MR_ERR_CLOSED;
    Moerack__StatusRequest rq = MOERACK__STATUS_REQUEST__INIT;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_STATUS_REQUEST;
    env.status_request = &rq;
    Moerack__Envelope *rep = NULL;
    mr_status st = mr_frame_send(fd, &env, 3000);
    if (st == MR_OK) st = mr_frame_recv(fd, MR_FRAME_MAX_DEFAULT, 5000, &rep);
    close(fd);
    if (st == MR_OK && rep->msg_case != MOERACK__ENVELOPE__MSG_STATUS_REPLY) {
        mr_frame_free(rep);
        st = MR_ERR_PROTO;
    }
    if (st == MR_OK) *out = rep;
    return st;
}

double mr_client_generate(const char *host, int port, const int32_t *ids, int n, int max_tokens) {
    int fd = mr_client_open(host, port, MOERACK__ROLE__ROLE_CLIENT, 5000);
    if (fd < 0) return -1;
    Moerack__GenerateRequest rq = MOERACK__GENERATE_REQUEST__INIT;
    rq.n_prompt = (size_t)n;
    rq.prompt = (int32_t *)ids;
    rq.max_tokens = (uint32_t)max_tokens;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_GENERATE_REQUEST;
    env.generate_request = &rq;
    Moerack__Envelope *rep = NULL;
    double t0 = mr_now_s(), dt = -1;
    if (mr_frame_send(fd, &env, 10000) == MR_OK && mr_frame_recv(fd, 1u << 30, -1, &rep) == MR_OK &&
        rep->msg_case == MOERACK__ENVELOPE__MSG_GENERATE_REPLY && !rep->generate_reply->error)
        dt = mr_now_s() - t0;
    else if (rep && rep->msg_case == MOERACK__ENVELOPE__MSG_GENERATE_REPLY &&
             rep->generate_reply->error)
        MR_LOG_ERROR(MR_LOG_CLI, "cluster: %s", rep->generate_reply->error->message);
    mr_frame_free(rep);
    close(fd);
    return dt;
}
