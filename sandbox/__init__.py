"""Docker implementation of ``evalsuite.sandbox.Sandbox`` (entry point ``docker``).

    from sandbox.docker_sandbox import DockerSandbox
    with DockerSandbox() as sb:                 # workers = 2 x CPU count
        for result in sb.run(jobs):             # ExecJob in, ExecResult out
            ...

Modules: ``image`` (build the image), ``engine`` (connect, fix-it errors),
``container`` (hardened container config, cleanup), ``executor`` (PID 1 inside
the container: fork per job), ``channel`` (attach-socket protocol), ``pool``
(one worker = one container; verdicts), ``values`` (result_var decoding),
``check`` (isolation probes), ``cli`` (``evalsuite sandbox ...``).
"""
