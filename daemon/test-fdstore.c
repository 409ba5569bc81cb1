/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fd store notifications, against a datagram socket standing in for the
 * service manager's $NOTIFY_SOCKET: what is sent, with which fds, once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdstore.h"
#include "test.h"
#include "util.h"

static int manager_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        CHECK(fd >= 0);
        unlink(path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        CHECK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        return fd;
}

/* One datagram into text (NUL-terminated); its fd, if any, in *ret_fd.
 * Returns the number of fds, -1 if nothing is waiting. */
static int receive(int fd, char *text, size_t size, int *ret_fd) {
        union {
                struct cmsghdr header;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { .iov_base = text, .iov_len = size - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        int n_fds = 0;

        *ret_fd = -EBADF;
        if (n < 0)
                return -1;
        text[n] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        n_fds = (int) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
                        for (int i = 1; i < n_fds; i++) {
                                int extra;
                                memcpy(&extra, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                close(extra);
                        }
                }
        return n_fds;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;
        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_names(void) {
        char kind[FDSTORE_KIND_MAX];
        uint64_t id;

        printf("# names\n");
        CHECK(fdstore_parse_name("iommufd-12", kind, sizeof(kind), &id) == 0 && streq(kind, "iommufd") && id == 12);
        CHECK(fdstore_parse_name("pidfd-7", kind, sizeof(kind), &id) == 0 && streq(kind, "pidfd") && id == 7);
        CHECK(fdstore_parse_name("varlink", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name("iommufd-", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name("iommufd--3", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name("iommufd-3x", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name("other-3", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name("averyveryverylongkind-3", kind, 16, &id) < 0);

        char request[FDSTORE_KIND_MAX], name[64];
        fdstore_request_kind(request, "0000:00:03.0");
        CHECK_STR(request, "request.0000_00_03.0");     /* ':' separates FDNAMEs in $LISTEN_FDNAMES */
        snprintf(name, sizeof(name), "%s-12", request);
        CHECK(fdstore_parse_name(name, kind, sizeof(kind), &id) == 0 && streq(kind, request) && id == 12);
        CHECK(fdstore_parse_name("request-12", kind, sizeof(kind), &id) < 0);
        CHECK(fdstore_parse_name(name, kind, 8, &id) < 0);     /* no room: not ours */
}

static void test_notifications(const char *dir) {
        char path[256], text[256];
        int mgr, got, file, n_fds;

        printf("# push and remove\n");
        snprintf(path, sizeof(path), "%s/notify", dir);
        mgr = manager_socket(path);
        setenv("NOTIFY_SOCKET", path, 1);
        fdstore_reset();
        file = open("/dev/null", O_RDONLY | O_CLOEXEC);

        CHECK_INT(fdstore_push(file, "iommufd", 5), 0);
        n_fds = receive(mgr, text, sizeof(text), &got);
        CHECK_INT(n_fds, 1);
        CHECK_STR(text, "FDSTORE=1\nFDNAME=iommufd-5\nFDPOLL=0");
        CHECK_MSG(got >= 0 && got != file && same_file(got, file), "the manager gets its own copy of the fd");
        safe_close(got);

        printf("# a name already stored is not pushed again\n");
        CHECK_INT(fdstore_push(file, "iommufd", 5), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), -1);
        CHECK_INT(fdstore_push(file, "pidfd", 5), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), 1);
        CHECK_STR(text, "FDSTORE=1\nFDNAME=pidfd-5\nFDPOLL=0");
        safe_close(got);

        CHECK_INT(fdstore_remove("iommufd", 5), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), 0);
        CHECK_STR(text, "FDSTOREREMOVE=1\nFDNAME=iommufd-5");
        printf("# after its removal it is pushed again\n");
        CHECK_INT(fdstore_push(file, "iommufd", 5), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), 1);
        CHECK_STR(text, "FDSTORE=1\nFDNAME=iommufd-5\nFDPOLL=0");
        safe_close(got);

        printf("# kinds are told apart: a request eventfd of the same session is its own name\n");
        {
                char request[FDSTORE_KIND_MAX];
                fdstore_request_kind(request, "0000:00:03.0");
                CHECK_INT(fdstore_push(file, request, 5), 0);
                CHECK_INT(receive(mgr, text, sizeof(text), &got), 1);
                CHECK_STR(text, "FDSTORE=1\nFDNAME=request.0000_00_03.0-5\nFDPOLL=0");
                safe_close(got);
                CHECK_INT(fdstore_push(file, request, 5), 0);
                CHECK_INT(receive(mgr, text, sizeof(text), &got), -1);
                CHECK_INT(fdstore_remove(request, 5), 0);
                CHECK_INT(receive(mgr, text, sizeof(text), &got), 0);
                CHECK_STR(text, "FDSTOREREMOVE=1\nFDNAME=request.0000_00_03.0-5");
        }

        printf("# the manager binds its socket anew (daemon-reexec)\n");
        close(mgr);
        mgr = manager_socket(path);
        CHECK_INT(fdstore_remove("pidfd", 5), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), 0);
        CHECK_STR(text, "FDSTOREREMOVE=1\nFDNAME=pidfd-5");

        printf("# no manager: an error, nothing recorded as stored\n");
        close(mgr);
        unlink(path);
        CHECK(fdstore_push(file, "pidfd", 6) < 0);
        mgr = manager_socket(path);
        CHECK_INT(fdstore_push(file, "pidfd", 6), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), 1);
        safe_close(got);

        printf("# an abstract socket name\n");
        close(mgr);
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                char name[64];
                int n = snprintf(name, sizeof(name), "@test-fdstore-%d", (int) getpid());

                mgr = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                memcpy(sa.sun_path, name, n);
                sa.sun_path[0] = 0;
                CHECK(bind(mgr, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n)) == 0);
                setenv("NOTIFY_SOCKET", name, 1);
                fdstore_reset();
                CHECK_INT(fdstore_remove("iommufd", 9), 0);
                CHECK_INT(receive(mgr, text, sizeof(text), &got), 0);
                CHECK_STR(text, "FDSTOREREMOVE=1\nFDNAME=iommufd-9");
        }

        printf("# without $NOTIFY_SOCKET everything is a no-op\n");
        unsetenv("NOTIFY_SOCKET");
        fdstore_reset();
        CHECK(!fdstore_available());
        CHECK_INT(fdstore_push(file, "iommufd", 7), 0);
        CHECK_INT(fdstore_remove("iommufd", 7), 0);
        CHECK_INT(receive(mgr, text, sizeof(text), &got), -1);

        fdstore_reset();
        close(mgr);
        close(file);
        unlink(path);
}

int main(void) {
        char dir[] = "/tmp/test-fdstore.XXXXXX";
        int fds_before;

        if (!mkdtemp(dir))
                return 1;
        fds_before = test_count_open_fds();
        test_names();
        test_notifications(dir);
        CHECK_INT(test_count_open_fds(), fds_before);
        rmdir(dir);
        return test_result();
}
