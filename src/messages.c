/*
 * messages.c: pgml's errors without PL/Python's traceback.
 *
 * PL/Python puts a Python traceback at the head of an ERROR's CONTEXT ("Traceback (most
 * recent call last): ... PL/Python function \"score_into\""). pgml's own errors say what
 * is wrong in their message, detail and hint (and a bulk path names the row's key); in
 * psql a traceback reads like a crash. The C scorers strip it when they re-throw their
 * PL/Python twin's error; for the functions that are PL/Python only (score_into,
 * registration, text models, pgml.example), an emit_log_hook strips it from pgml's
 * errors ("pgml: ...") as they are reported, to the client and the log alike. Other
 * errors keep their context: a bug's traceback is worth having.
 */
#include "postgres.h"

#include "utils/elog.h"

#include "pgml_ext.h"

static emit_log_hook_type previous_emit_log = NULL;

/*
 * CONTEXT without the PL/Python traceback that opens it; any context lines after it are
 * kept (NULL: nothing left).
 */
char *
pgml_without_traceback(char *context)
{
	char	   *end;

	if (context == NULL || strncmp(context, "Traceback (most recent call last):", 34) != 0)
		return context;
	end = strstr(context, "\nPL/Python function \"");
	if (end == NULL)
		return NULL;
	end = strchr(end + 1, '\n');
	return end != NULL ? pstrdup(end + 1) : NULL;
}

static void
report_without_traceback(ErrorData *edata)
{
	if (edata->elevel >= ERROR && edata->message != NULL
		&& strncmp(edata->message, "pgml: ", 6) == 0)
		edata->context = pgml_without_traceback(edata->context);
	if (previous_emit_log)
		previous_emit_log(edata);
}

void
messages_init(void)
{
	previous_emit_log = emit_log_hook;
	emit_log_hook = report_without_traceback;
}
