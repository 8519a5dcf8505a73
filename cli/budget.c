/* budget: requests by class in --json (see budget.h). */
#include "budget.h"

json_t *cli_requests_json(const ss_stats *s)
{
    json_t *o = json_object();
    for (unsigned i = 0; i < SS_REQ_CLASSES; i++)
        json_object_set_new(o, ss_req_class_name(i),
                            json_integer((json_int_t)s->requests_by_class[i]));
    return o;
}
