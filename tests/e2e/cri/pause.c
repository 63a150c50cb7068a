/* pause.c -- the pod sandbox's process for the CRI tests: sleeps until told to stop.
 *
 * What the kubelet's pause image does, built here with `gcc -static` because no registry is
 * reachable: containerd runs it as every pod's sandbox container. */
#include <signal.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

int main(void)
{
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	for (;;)
		pause();
}
