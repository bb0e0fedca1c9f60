"""``python -m fraudlab`` and the ``fraudlab`` console script."""


def main() -> None:
    from fraudlab.training._cli import run

    run()


if __name__ == "__main__":
    main()
