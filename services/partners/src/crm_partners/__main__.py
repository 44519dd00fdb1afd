from crm_partners.main import create_app
from crm_partners.settings import Settings
from crmkit import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
