// The public header must compile as C++ (inside extern "C") with strict
// warnings, and its declarations must be usable from C++ code.
#include <roost/roost.h>

#include <cstdio>

static void
log_to_stderr(void *, int level, const char *message)
{
    std::fprintf(stderr, "%s: %s\n", roost_log_level_name(level), message);
}

int
main()
{
    roost_config *cfg = nullptr;
    if (roost_config_create(&cfg, nullptr) != ROOST_OK)
        return 1;
    roost_config_set_log(cfg, log_to_stderr, nullptr, ROOST_LOG_INFO);
    int rc = roost_config_set_server(cfg, "not-an-endpoint", nullptr);
    roost_config_destroy(cfg);
    std::printf("%s %s\n", roost_version_string(), roost_errname(rc));
    return rc == ROOST_EINVAL ? 0 : 1;
}
